"""A small Flask application for tests/wsgi/test_wsgi_bridge.py (``wsgi_flask_app:app``)."""

from __future__ import annotations

import hashlib

from flask import Flask, Response, abort, jsonify, request, stream_with_context

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "flask index"


@app.get("/items/<int:item_id>")
def item(item_id: int) -> Response:
    if item_id == 404:
        abort(404)
    return jsonify(id=item_id, name=f"item {item_id}", tags=["a", "b"], q=request.args.get("q"))


@app.post("/json")
def echo_json() -> Response:
    data = request.get_json()
    return jsonify(received=data, type=request.content_type)


@app.post("/form")
def form() -> Response:
    return jsonify(
        name=request.form["name"],
        colours=request.form.getlist("colour"),
        script_root=request.script_root,
        path=request.path,
    )


@app.post("/upload")
def upload() -> Response:
    f = request.files["file"]
    data = f.read()
    return jsonify(filename=f.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest())


@app.get("/stream")
def stream() -> Response:
    count = int(request.args.get("n", "5"))

    @stream_with_context
    def generate():  # type: ignore[no-untyped-def]
        for i in range(count):
            yield f"line {i} {request.args.get('tag', '')}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/cookie")
def cookie() -> Response:
    response = jsonify(cookies=dict(request.cookies))
    response.set_cookie("server", "set")
    return response


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("flask-boom-marker")
