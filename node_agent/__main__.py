"""`meshd`: parse settings, load identity, run the agent until SIGTERM/SIGINT.

A user mistake (any `meshd.errors.FixableError`) is one stderr line `meshd: where: what. Fix:
fix` and exit code 2, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys
from collections.abc import Awaitable, Callable

from meshd.errors import FixableError
from node_agent.config import Config, ConfigError, load, one_line, read_data

log = logging.getLogger("meshd")


def _load_identity(config: Config) -> tuple[object, object, object]:
    from meshd.community import parse_community
    from meshd.errors import CommunityError
    from meshd.keyfile import load_certificate, load_private_key

    key = load_private_key(config.key)  # KeyFileError: a FixableError, reported by main
    cert = load_certificate(config.cert)
    data = read_data(config.community_file, "--community-file")
    try:
        community = parse_community(data)
    except CommunityError as exc:
        lines = "; ".join(f"{p.path}: {p.message} (fix: {p.fix})" for p in exc.problems)
        raise ConfigError(
            lines, str(config.community_file), "use the community file of this node's bundle"
        ) from None
    if config.trust_file is not None:
        from node_agent.trustpin import TrustError, check_community

        try:
            verified = check_community(
                config.trust_file, config.community_file, data, community, config.state_dir
            )
        except TrustError as exc:
            raise TrustError(
                f"refusing the community file: {exc.what}", exc.where, exc.fix
            ) from None
        log.info("%s: %s", config.community_file, verified)
    if cert.key != key.public:
        raise ConfigError(
            f"certificate is for another key than {config.key}",
            str(config.cert),
            "pass the certificate issued for this node's key",
        )
    if cert.community != community.name:
        raise ConfigError(
            f"certificate is for community {cert.community!r}, the community file is "
            f"{community.name!r}",
            str(config.cert),
            "use matching files",
        )
    if cert.hostname != config.hostname:
        log.warning(
            "--hostname %s differs from the certificate's %s; using the certificate's",
            config.hostname,
            cert.hostname,
        )
        config.hostname = cert.hostname
    return key, cert, community


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def delayed_start(
    config: Config,
    stop: asyncio.Event,
    start: Callable[[], Awaitable[object]],
    *,
    uniform: Callable[[float, float], float] = random.uniform,
    wait: Callable[[asyncio.Event, float], Awaitable[None]] = _wait_or_stop,
) -> bool:
    """After a power cut every router boots at once: wait a random 0..--start-delay seconds
    before anything is started (no broker connection, nothing published), so the mesh is not
    flooded by all agents replaying at the same instant. SIGTERM during the wait ends it; then
    nothing starts and False is returned."""
    if config.start_delay > 0:
        delay = uniform(0.0, config.start_delay)
        log.info("start delay %.1f s", delay)
        await wait(stop, delay)
        if stop.is_set():
            return False
    await start()
    return True


async def _main(config: Config) -> None:
    from node_agent.agent import run

    key, cert, community = _load_identity(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await delayed_start(
        config,
        stop,
        lambda: run(config, key, cert, community, stop.wait),  # type: ignore[arg-type]
    )


def main(argv: list[str] | None = None) -> int:
    try:
        config = load(argv)
    except FixableError as exc:
        print(f"meshd: {one_line(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s meshd[%(name)s] %(levelname)s %(message)s",
    )
    logging.getLogger("zeroconf").setLevel(logging.WARNING)
    from node_agent.lean import defer_unused

    defer_unused()  # before aiomqtt is imported
    try:
        asyncio.run(_main(config))
    except FixableError as exc:  # ConfigError, TrustError, KeyFileError: one line, no traceback
        print(f"meshd: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"meshd: {exc}. Fix: check ports and permissions", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
