#!/usr/bin/env python3
"""The secrets check over a whole test run (issue 7): no log any keyplex server wrote during
the run holds any secret the run handled.

    scripts/check-secrets.py DIR

DIR is the run's KEYPLEX_SECRETS_AUDIT_DIR (scripts/test.sh creates it and points every
suite at it). It holds
  *.secrets  one secret per line: `hex:<bytes in hex>` (content keys, master keys) or
             `text:<string>` (passwords, shared secrets, tokens of the test configurations);
             written by the Rust integration tests (every key their stores handed out,
             tests/it/witness.rs) and by the Python suites (every key they received,
             tests/keyplex_proc.py)
  *.log      logs: the Rust integration tests' in-process servers at debug level, and every
             server log of the Python suites (copied at the end of each suite)
Bytes are looked for in every spelling a log line could carry them in: hex (both cases),
base64, base64 without padding, base64url; strings as they are. The check fails when a
log holds one (naming the log, the line number and the kind of secret, never the secret),
and also when it would be vacuous: too few secrets or no logs from a suite.
"""

import base64
import re
import sys
import uuid
from pathlib import Path

# A full run handles thousands of keys; far fewer means the recording broke.
MIN_KEYS = 200


def spellings(raw: bytes) -> set[str]:
    b64 = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    found = {raw.hex(), raw.hex().upper(), b64, b64.rstrip("="), url, url.rstrip("=")}
    if len(raw) == 16:
        found.add(str(uuid.UUID(bytes=raw)))
    return found


class Secrets:
    """Every spelling of every recorded secret, and what kind of secret it is."""

    def __init__(self, directory: Path):
        self.encoded: dict[str, str] = {}  # spellings of byte secrets
        self.texts: dict[str, str] = {}  # configured strings, as they are
        self.content_keys = 0
        for path in sorted(directory.rglob("*.secrets")):
            for line in path.read_text(errors="replace").splitlines():
                kind, _, value = line.partition(":")
                if kind == "hex" and re.fullmatch(r"(?:[0-9a-f]{2}){16,}", value):
                    raw = bytes.fromhex(value)
                    label = "a content key" if len(raw) == 16 else f"a {len(raw)}-byte secret"
                    for s in spellings(raw):
                        if s not in self.encoded:
                            self.content_keys += label == "a content key" and s == raw.hex()
                            self.encoded[s] = label
                elif kind == "text" and len(value) >= 8:
                    self.texts[value] = "a configured secret"
        self.lengths = sorted({len(s) for s in self.encoded})

    def __len__(self) -> int:
        return len(self.encoded) + len(self.texts)

    def find(self, line: str):
        """The kinds of the secrets in `line`. Encoded secrets are looked for inside every
        run of base64/hex/UUID characters (also inside longer ones: a hex dump holding a
        key is a leak), which keeps the scan linear in the log's size."""
        for token in TOKEN.findall(line):
            for n in self.lengths:
                for i in range(len(token) - n + 1):
                    kind = self.encoded.get(token[i:i + n])
                    if kind:
                        yield kind
        for text, kind in self.texts.items():
            if text in line:
                yield kind


TOKEN = re.compile(r"[0-9A-Za-z+/=_-]{20,}")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(sys.argv[1])
    secrets = Secrets(directory)
    logs = sorted(directory.rglob("*.log"))
    by_suite = {
        "Rust integration tests": [p for p in logs if p.name.startswith("it-")],
        "Python suites": [p for p in logs if not p.name.startswith("it-")],
    }
    problems = []
    if secrets.content_keys < MIN_KEYS:
        problems.append(f"only {secrets.content_keys} content keys recorded (at least {MIN_KEYS} expected)")
    if not secrets.texts:
        problems.append("no configured secrets recorded")
    for suite, paths in by_suite.items():
        if not paths:
            problems.append(f"no logs of the {suite}")
    if problems:
        print("secrets check cannot run: " + "; ".join(problems), file=sys.stderr)
        return 1

    leaks = []
    total_bytes = 0
    for path in logs:
        text = path.read_text(errors="replace")
        total_bytes += len(text)
        for number, line in enumerate(text.splitlines(), 1):
            for kind in secrets.find(line):
                leaks.append(f"{path.relative_to(directory)}:{number}: {kind}")
    print(f"secrets check: {secrets.content_keys} content keys, {len(secrets.texts)} configured "
          f"secrets and the master keys the run handled; {len(logs)} logs "
          f"({total_bytes / 1e6:.1f} MB)")
    if leaks:
        print(f"{len(leaks)} secrets found in logs:", file=sys.stderr)
        for leak in leaks[:50]:
            print("  " + leak, file=sys.stderr)
        return 1
    print("secrets check: no secret in any log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
