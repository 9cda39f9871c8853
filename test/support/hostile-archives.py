"""Writes one hostile or broken Flower App archive per refusal reason into the given folder."""
import io
import stat
import sys
import zipfile
from pathlib import Path

out = Path(sys.argv[1])
PYPROJECT = """[project]
name = "hostile"
version = "1.0.0"

[tool.flwr.app.components]
serverapp = "hostile.server_app:app"
clientapp = "hostile.client_app:app"
"""
VALID = {
    "pyproject.toml": PYPROJECT,
    "hostile/server_app.py": "app = None\n",
    "hostile/client_app.py": "app = None\n",
}


def write(name, files=VALID, extra=()):
    with zipfile.ZipFile(out / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in files.items():
            archive.writestr(path, content)
        for info, content in extra:
            archive.writestr(info, content)


write("PATH_TRAVERSAL", extra=[(zipfile.ZipInfo("../evil.py"), "x")])
write("ABSOLUTE_PATH", extra=[(zipfile.ZipInfo("/etc/cron.d/evil"), "x")])
link = zipfile.ZipInfo("hostile/link")
link.create_system = 3
link.external_attr = (stat.S_IFLNK | 0o777) << 16
write("SYMLINK", extra=[(link, "/etc/passwd")])
bomb = zipfile.ZipInfo("hostile/zeros.bin")
bomb.compress_type = zipfile.ZIP_DEFLATED
with zipfile.ZipFile(out / "ZIP_BOMB.zip", "w", zipfile.ZIP_DEFLATED) as archive:
    for path, content in VALID.items():
        archive.writestr(path, content)
    with archive.open(bomb, "w") as target:
        chunk = bytes(1024 * 1024)
        for _ in range(400):
            target.write(chunk)
write("MISSING_FILE", files={k: v for k, v in VALID.items() if k != "hostile/server_app.py"})
write("BAD_PYPROJECT", files={**VALID, "pyproject.toml": "[project\nname = 'x'\n"})
write("BAD_COMPONENT", files={**VALID, "pyproject.toml": PYPROJECT.replace("hostile.server_app:app", "nowhere.module:app")})
(out / "NOT_A_ZIP.zip").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
with zipfile.ZipFile(out / "DUPLICATE_ENTRY.zip", "w") as archive:
    for path, content in VALID.items():
        archive.writestr(path, content)
    import warnings
    warnings.simplefilter("ignore")
    archive.writestr("hostile/server_app.py", "app = 'twin'\n")
