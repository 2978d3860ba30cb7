"""Benchmarks for the partner gateway: overhead, key scaling, upstream economy, memory.

Each benchmark builds its own throw-away deployment on loopback (emulator, `gateway init`,
`gateway docusign configure --sandbox`, `gateway partners add`, `gateway serve`), prints a
table and stops every process it started. See `bench/README.md` for the commands.
"""
