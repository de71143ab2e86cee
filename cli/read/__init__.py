"""The admin's read path, one module per job.

    community  the community file: structure, k-of-n signatures, trust chain, revocations
    source     where records come from: a snapshot file, a broker, a broker found over mDNS
    verify     the one verification loop (serial, or forked over the cores for large meshes)
    archive    past snapshots in SQLite, opened once and passed along on the `Mesh`
    options    the click options every reading command shares, and `open_mesh`

Nothing here trusts the transport: every record is verified by the core's `RecordStore` against
the community's admin keys, exactly as a node does.
"""
