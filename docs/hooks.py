"""MkDocs hook: the "Command line" page gets its reference from the parsers at build time (never typed by hand)."""

PLACEHOLDER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook signature
    if PLACEHOLDER not in markdown:
        return markdown
    from medcore.cli.reference import markdown as reference

    return markdown.replace(PLACEHOLDER, reference())
