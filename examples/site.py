"""Server-rendered pages: Jinja2 templates (autoescaped), a form, and a static directory.

Run it with ``python examples/site.py`` and open http://127.0.0.1:8000/.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from cello import App, Form, NotFound, RedirectResponse, TemplateResponse

HERE = Path(__file__).resolve().parent / "site"

app = App(templates=HERE / "templates")
app.static("/static", HERE / "static")
notes: list[str] = []


@app.get("/")
async def index():
    # async rendering; whatever a note contains is escaped by the template
    return await app.render("index.html", notes=notes)


@app.post("/notes")
def add_note(text: Annotated[str, Form(min_length=1, max_length=500)]):
    notes.append(text)
    return RedirectResponse(app.url_path_for("index"), status=303)


@app.get("/notes/{note_id:int}")
def show_note(request, note_id: int):
    if note_id >= len(notes):
        raise NotFound("There is no such note.")
    return TemplateResponse(request, "note.html", {"note": notes[note_id]})


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
