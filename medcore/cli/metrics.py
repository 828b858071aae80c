"""placeholder"""
def register(commands) -> None:
    pass
