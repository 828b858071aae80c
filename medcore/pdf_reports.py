"""PDF reports a clinician can file with a case: one per chest X-ray study, one per case note (fpdf2).

A study report shows the film beside its Grad-CAM overlay, the calibrated probability against the
operating threshold with that threshold's validation sensitivity and specificity (and where those come
from), the model version, the date and the disclaimer. A note report shows the top classes and the note
with its words coloured by their SHAP contribution. User text is written as text, never interpreted.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
from fpdf import FPDF
from PIL import Image

from medcore.imaging.gradcam import overlay
from medcore.imaging.service import StudyResult
from medcore.metrics import format_probability, operating_figures
from medcore.notes.explain import Attribution
from medcore.notes.service import NotePrediction
from medcore.reports import intended_use_rows

DISCLAIMER = ("Decision support only, not a diagnosis. The model was trained on paediatric frontal chest films "
              "from one centre (Kermany et al. 2018) and validated on films from the same source; on new patients "
              "its specificity has been lower. It does not replace a clinician's or radiologist's reading.")
NOTE_DISCLAIMER = ("Decision support only, not a diagnosis. Probabilities are calibrated on validation notes from "
                   "the training source; colours show which words moved the model, not clinical evidence.")
UNICODE_FONTS = (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
                 Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"))
MAX_NOTE_CHARS = 6_000  # about two pages of highlighted text; the rest is said to be left out
MAX_CELL_CHARS = 300  # a table value (a file name, a reason) longer than this is shortened, said with "…"


class _Document(FPDF):
    """A4 portrait with a Unicode font where the system has DejaVu, else Helvetica with Latin-1 text."""

    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.set_title(title)
        self.set_creator("MedCore")
        self.set_auto_page_break(True, margin=15)
        self.unicode = all(path.is_file() for path in UNICODE_FONTS)
        if self.unicode:
            self.add_font("body", "", str(UNICODE_FONTS[0]))
            self.add_font("body", "B", str(UNICODE_FONTS[1]))
        self.family_name = "body" if self.unicode else "helvetica"
        self.add_page()
        self.font(10)
        self.glyphs = set(self.current_font.cmap) if self.unicode else set()  # the characters the font can draw

    def text_safe(self, text: str) -> str:
        """Text the font can draw: control characters removed; a character the font lacks becomes '?'."""
        text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", text)
        if not self.unicode:
            return text.encode("latin-1", "replace").decode("latin-1")
        return "".join(ch if ord(ch) in self.glyphs or ch in "\n\t" else "?" for ch in text)

    def lacks_glyphs(self, text: str) -> bool:
        return self.text_safe(text).count("?") > text.count("?")

    def font(self, size: float, bold: bool = False) -> None:
        self.set_font(self.family_name, "B" if bold else "", size)

    def heading(self, text: str) -> None:
        self.font(16, bold=True)
        self.multi_cell(0, 8, self.text_safe(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def paragraph(self, text: str, size: float = 10, bold: bool = False) -> None:
        self.font(size, bold)
        self.multi_cell(0, size * 0.5, self.text_safe(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def table(self, rows: list[tuple[str, str]]) -> None:
        self.font(10)
        with super().table(col_widths=(60, 120), first_row_as_headings=False, line_height=6,
                           text_align="LEFT") as table:
            for key, value in rows:
                row = table.row()
                row.cell(self.text_safe(key))
                row.cell(self.text_safe(_shortened(value)))
        self.ln(3)

    def image_array(self, image: np.ndarray, x: float, y: float, width: float) -> float:
        """Place a uint8 RGB or float grayscale image; return its height on the page (mm)."""
        if image.dtype != np.uint8:
            image = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
        picture = Image.fromarray(image)
        height = width * picture.height / picture.width
        self.image(picture, x=x, y=y, w=width, h=height)
        return height


def _shortened(text: str) -> str:
    """A table cell must fit on one page: a 5,000-character file name is cut, and the cut is shown."""
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS - 1] + "…"


def _fitting_parts(pdf: _Document, word: str, width: float) -> list[str]:
    """A word wider than a line, cut into pieces that each fit one (nothing clipped at the page's edge)."""
    parts, current = [], ""
    for character in word:
        if current and pdf.get_string_width(current + character) > width:
            parts.append(current)
            current = ""
        current += character
    return parts + [current]


def notice_pdf(title: str, text: str) -> bytes:
    """A one-paragraph PDF: what a download gets instead of a report it cannot have (a session that ended)."""
    pdf = _Document(title)
    pdf.heading(title)
    pdf.paragraph(text)
    return bytes(pdf.output())


def _created() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def study_report_pdf(result: StudyResult, evidence: dict, opacity: float = 0.5) -> bytes:
    """One study: film and Grad-CAM side by side, probability, threshold and its operating figures."""
    pdf = _Document("MedCore chest X-ray report")
    pdf.heading("MedCore chest X-ray report")
    rows = [("Study", result.filename), ("Model version", result.model_version), ("Report created", _created())]
    if result.error:
        pdf.table(rows + [("Result", "No prediction")])
        pdf.paragraph(result.error)
    else:
        positive = result.labels[1]
        rows += intended_use_rows(result)
        rows += [(f"{positive.capitalize()} probability (calibrated)", format_probability(result.probability)),
                 ("Operating threshold", f"{result.threshold:.1%}"),
                 ("Decision", f"{result.decision} (probability {'at or above' if result.flagged else 'below'} "
                              "the threshold)"),
                 ("This threshold on held-out films",
                  f"{operating_figures(evidence['metrics'])}; {evidence['source']}")]
        pdf.table(rows)
        if result.display is not None and result.heatmap is not None:
            top, width, gap = pdf.get_y(), (pdf.epw - 6) / 2, 6
            height = pdf.image_array(result.display, pdf.l_margin, top, width)
            pdf.image_array(overlay(result.display, result.heatmap, opacity), pdf.l_margin + width + gap, top, width)
            pdf.set_y(top + height + 2)
            pdf.paragraph(f"Left: the image as uploaded. Right: Grad-CAM at opacity {opacity:.0%}, the regions that "
                          f"raised the {positive.lower()} score (red = strongest).", size=8)
    pdf.ln(2)
    pdf.paragraph(DISCLAIMER, size=8)
    return bytes(pdf.output())


def _rgb(value: float, scale: float) -> tuple[int, int, int]:
    """The page's colours on white: red towards the class, blue away, stronger with |value|."""
    strength = min(abs(value) / scale, 1.0) * 0.85 if scale > 0 else 0.0
    colour = (220, 38, 38) if value > 0 else (37, 99, 235)
    return tuple(round(255 + (c - 255) * strength) for c in colour)


def _highlighted_note(pdf: _Document, text: str, attribution: Attribution, class_index: int) -> None:
    """The note word by word, each explained word on a background of its SHAP colour, wrapped to the page."""
    values = attribution.values[:, class_index]
    scale = float(np.max(np.abs(values))) if len(values) else 0.0
    pieces, cursor = [], 0
    for token, value in zip(attribution.tokens, values):
        if token.start >= MAX_NOTE_CHARS:
            break
        pieces += [(text[cursor:token.start], None), (text[token.start:token.end], float(value))]
        cursor = token.end
    pieces.append((text[cursor:MAX_NOTE_CHARS], None))
    pdf.font(10)
    line_height, right = 6, pdf.w - pdf.r_margin
    for piece, value in pieces:
        for part in re.split(r"(\n|[^\S\n]+)", pdf.text_safe(piece)):
            if not part:
                continue
            if part == "\n":
                pdf.ln(line_height)
                continue
            for piece_part in _fitting_parts(pdf, part, pdf.epw) if not part.isspace() else [part]:
                width = pdf.get_string_width(piece_part)
                if pdf.get_x() + width > right:
                    pdf.ln(line_height)
                    if piece_part.isspace():
                        continue
                if value is not None:
                    pdf.set_fill_color(*_rgb(value, scale))
                pdf.cell(width, line_height, piece_part, fill=value is not None)
    pdf.ln(line_height + 2)
    if pdf.lacks_glyphs(text[:MAX_NOTE_CHARS]):
        pdf.paragraph("Characters the PDF font cannot draw are shown as '?'; the Case notes page shows the note "
                      "as written.", size=8)
    if len(text) > MAX_NOTE_CHARS:
        pdf.paragraph(f"The note continues for {len(text) - MAX_NOTE_CHARS:,} more characters, not shown here.",
                      size=8)


def note_report_pdf(prediction: NotePrediction, attribution: Attribution, class_index: int,
                    task_title: str) -> bytes:
    """One note: its top classes and the note coloured by the words' SHAP values for one class."""
    pdf = _Document("MedCore case-note report")
    pdf.heading("MedCore case-note report")
    label = prediction.labels[class_index]
    top = prediction.ranked(3)
    if prediction.certain:
        finding = f"most likely {top[0][0]}"
    elif prediction.quantiles is not None:
        finding = f"{prediction.finding}: sets like this one {prediction.coverage}"
    else:
        finding = (f"uncertain: no class reaches {prediction.confidence_threshold:.0%}, the confidence at which at "
                   "least 90 % of the model's findings were correct on validation")
    pdf.table([("Task", task_title), ("Model version", prediction.model_version), ("Report created", _created()),
               ("Finding", finding)]
              + [(f"Class {rank}", f"{name}: {format_probability(p)}") for rank, (name, p) in enumerate(top, 1)])
    pdf.paragraph(f"Words on red pushed the note towards \"{label}\", words on blue away from it; the stronger the "
                  "colour, the larger the push (SHAP values, log-odds).", size=9)
    _highlighted_note(pdf, prediction.note.text, attribution, class_index)
    pdf.paragraph(NOTE_DISCLAIMER, size=8)
    return bytes(pdf.output())

