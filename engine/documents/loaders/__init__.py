"""One module per file format. Each exposes ``load(path, name, limits) -> Document`` and
runs inside the parser process (see ``engine.documents.sandbox``)."""
