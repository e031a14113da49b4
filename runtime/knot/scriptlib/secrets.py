"""The secrets scripts may read, resolved from the settings and the environment, and redacted.

Values come from `[secrets]` in knot.toml (a value, or a file read when the settings load)
and from `KNOT_SECRET_<NAME>` in the runtime's environment, which wins. They are resolved
again whenever the settings change (a new `Config`), and every value is handed to the
`Redactor` that `WorkerProcess` runs over what workers send back (output, errors, emits,
directives, results), so a value a script prints or emits shows as `[secret:NAME]`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._config import Config
from .._secrets import SECRET_ENV_PREFIX, Redactor, check_secret_name

__all__ = ["Secrets"]

log = logging.getLogger("knot.scripts")

MAX_SECRET_FILE_BYTES = 64 * 1024


class Secrets:
    """The current secrets of one runtime (or one dry run), and their redactor."""

    def __init__(
        self,
        config: Callable[[], Config],
        project: Path,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._project = project
        self._environ = os.environ if environ is None else environ
        self._for: Config | None = None
        self._values: dict[str, str] = {}
        self.redactor = Redactor()

    def _current(self) -> dict[str, str]:
        config = self._config()
        if config is not self._for:
            self._for = config
            self._values = self._resolve(config)
            self.redactor.update(self._values)
        return self._values

    def _resolve(self, config: Config) -> dict[str, str]:
        values: dict[str, str] = {}
        for source in config.secrets.sources:
            if source.value is not None:
                values[source.name] = source.value
                continue
            path = Path(source.file).expanduser()
            path = path if path.is_absolute() else self._project / path
            try:
                with path.open("rb") as handle:
                    raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
                if len(raw) > MAX_SECRET_FILE_BYTES:
                    raise ValueError(f"it is larger than {MAX_SECRET_FILE_BYTES} bytes")
                text = raw.decode("utf-8").rstrip("\r\n")  # the newline editors add
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                log.warning(
                    "the secret %s (secrets.%s in knot.toml) names the file %s, which cannot "
                    "be read: %s; scripts asking for it get an error",
                    source.name,
                    source.name,
                    path,
                    reason,
                )
                continue
            if text:
                values[source.name] = text
        for key, value in self._environ.items():
            name = key.removeprefix(SECRET_ENV_PREFIX)
            if key.startswith(SECRET_ENV_PREFIX) and value and check_secret_name(name) is None:
                values[name] = value
        return values

    def get(self, name: str) -> str | None:
        return self._current().get(name)

    def redact_message(self, line: bytes, message: Any) -> Any:
        """A worker's message (decoded from `line`) with every secret value replaced: the
        same object when the line cannot hold one (the common case, found in the raw bytes)."""
        self._current()
        if not self.redactor.suspects(line):
            return message
        # The envelope (jsonrpc, id, method) is the protocol's: an id "w1" is no secret "1".
        return {key: self.redactor.message(value) for key, value in message.items()}

    def redact(self, text: str) -> str:
        self._current()
        return self.redactor.text(text) if self.redactor else text

    def missing(self, name: str) -> str:
        """Why `get(name)` found nothing, as a sentence."""
        return (
            f"There is no secret named {name!r}: define it in [secrets] of knot.toml "
            f'({name} = "..." or {name} = {{ file = "PATH" }}) or set '
            f"{SECRET_ENV_PREFIX}{name} in the runtime's environment."
        )
