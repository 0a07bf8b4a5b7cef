"""Lets Python 3.11 parse hsapi-client, which is written for 3.12.

Python 3.12 (PEP 701) allows a newline inside an f-string's replacement field, as in

    self.base_path = f"{
        self.api_settings.server}{self.api_settings.api_path}/{self.objectPath}"

and hsapi-client has two of them (hsapi_client/model.py). This joins each such field onto
one line — the whitespace after `{` only, which the field's value does not depend on — and
then compiles every module of the package, so anything else 3.11 cannot read still fails
loudly. Idempotent: a joined file is left alone. Usage: backport_fstrings.py <venv dir>.
"""

import pathlib
import re
import sys

# `f"...{` at the end of a line, then the field's indentation on the next.
SPLIT_FIELD = re.compile(r'(f"[^"\n]*\{)\n\s+')


def main(venv: str) -> int:
    (package,) = pathlib.Path(venv).glob("lib/python3*/site-packages/hsapi_client")
    for module in sorted(package.glob("*.py")):
        text = module.read_text()
        joined = SPLIT_FIELD.sub(r"\1", text)
        if joined != text:
            module.write_text(joined)
            print(f"backport_fstrings: joined split f-string fields in {module.name}")
        compile(joined, str(module), "exec")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
