"""The tool's logic, in plain Python: `python -m unittest` runs it natively,
and app.py serves it from the component."""


def count(text):
    if text == "":
        raise ValueError("the text is empty")
    return {"lines": len(text.splitlines()), "words": len(text.split()), "chars": len(text)}
