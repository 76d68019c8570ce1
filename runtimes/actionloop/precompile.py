"""`docker run -i <image> -compile <main> <src >out.zip`: an ActionLoop image as an offline compiler, as OpenWhisk's
(apache/openwhisk-runtime-go's proxy -compile, docs/DEPLOY.md "Precompiling Go Sources Offline").

Standard input is a source file or a zip of sources; it goes through the same steps as an /init (the proxy's extract and
$OW_COMPILER), and standard output gets a zip of the result, with `exec` at its top level, ready to be deployed as a
zip action of the same kind. The compiler's messages go to stderr; exit 1 when no binary came out.
"""

from __future__ import annotations

import base64
import io
import os
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy  # the image's /opt/ow/proxy.py, beside this file


def main(argv: list[str]) -> int:
    main_name = argv[1] if len(argv) > 1 and argv[1] else "main"
    code = base64.b64encode(sys.stdin.buffer.read()).decode()
    stdout = os.dup(1)
    os.dup2(2, 1)  # whatever the compiler prints stays off the zip
    try:
        with tempfile.TemporaryDirectory() as base:
            exe = proxy._build(proxy._extract(code, True, base), main_name)
            if exe is None:
                print("The action failed to generate or locate a binary.", file=sys.stderr)
                return 1
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                bin_dir = os.path.dirname(exe)
                for root, _, files in os.walk(bin_dir):
                    for name in sorted(files):
                        path = os.path.join(root, name)
                        info = zipfile.ZipInfo(os.path.relpath(path, bin_dir))
                        info.external_attr = (os.stat(path).st_mode & 0o777) << 16
                        info.compress_type = zipfile.ZIP_DEFLATED
                        with open(path, "rb") as f:
                            zf.writestr(info, f.read())
    finally:
        os.dup2(stdout, 1)
        os.close(stdout)
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
