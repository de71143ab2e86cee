"""The pure core of mutualmesh: identities, signed records, the replicated store and analysis.

Nothing here opens sockets or files or reads the clock: values in, values out. It imports only the
standard library and PyNaCl, so the router agent and the admin CLI share it.
"""

__version__ = "0.1.0"
