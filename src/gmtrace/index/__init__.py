"""A persistent fingerprint index of analyzed cases (docs/index.md): `store` keeps
the rows (SQLite), `vectors` the nearest-neighbour structure per model, `index`
answers "seen before"."""
