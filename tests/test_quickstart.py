"""The README's quick start, and the API guide's examples after it, run as written against a
real server.

The README block between `<!-- quickstart:start -->` and `<!-- quickstart:end -->` is a ```sh
fence that begins by setting three shell variables: `API` (the base URL), `ADMIN_USER` and
`ADMIN_PASSWORD` (what `make run` printed). This test replaces only those three assignment
lines, pointing them at a server it started itself on a freshly migrated SQLite file, and runs
every other line verbatim; then, in the same shell, every ```sh block of docs/api.md, in order
(they go on with the quick start's `API` and `TOKEN`). bash runs with `-euo pipefail` in an
environment holding nothing but PATH, HOME and LANG: a variable the blocks use without setting
it, or a command that fails, fails the test.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from alembic import command

from tests.pg import ROOT, alembic_config
from tests.test_faults import serving

pytestmark = pytest.mark.ops

README = ROOT / "README.md"
API_GUIDE = ROOT / "docs" / "api.md"
START = "<!-- quickstart:start -->"
END = "<!-- quickstart:end -->"
SH_FENCE = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)
ADMIN_USER = "quick.admin"
ADMIN_PASSWORD = "quick start password 1"  # a space: the block must quote it
SUBSTITUTED = ("API", "ADMIN_USER", "ADMIN_PASSWORD")
BETWEEN = "=== docs/api.md ==="


def quickstart_block() -> str:
    """The shell commands inside the README's quick-start markers."""
    readme = README.read_text(encoding="utf-8")
    start, end = readme.find(START), readme.find(END)
    assert start != -1 and end > start, f"README.md has no {START} ... {END} markers"
    fence = SH_FENCE.search(readme[start:end])
    assert fence, "the quick-start markers hold no ```sh block"
    return fence.group(1)


def api_guide_blocks() -> list[str]:
    return SH_FENCE.findall(API_GUIDE.read_text(encoding="utf-8"))


def with_values(block: str, values: dict[str, str]) -> str:
    """The block with each `NAME=...` line of SUBSTITUTED replaced by the given value."""
    lines = block.splitlines()
    for name in SUBSTITUTED:
        found = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
        assert len(found) == 1, f"the quick start sets {name} {len(found)} times, not once"
        lines[found[0]] = f"{name}='{values[name]}'"
    return "\n".join(lines) + "\n"


def run_bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def lines_matching(pattern: str, text: str) -> list[str]:
    return re.findall(pattern, text, re.MULTILINE | re.IGNORECASE)


def test_the_quick_start_sets_its_variables_first() -> None:
    block = quickstart_block()
    first = [line.split("=", 1)[0] for line in block.splitlines()[: len(SUBSTITUTED)]]
    assert first == list(SUBSTITUTED)
    assert "ADMIN_PASSWORD='<the password make run printed>'" in block
    assert api_guide_blocks(), "docs/api.md has no ```sh blocks"


@pytest.mark.skipif(shutil.which("curl") is None, reason="the examples call curl")
def test_the_examples_run_against_a_fresh_server(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'quickstart.db'}"
    command.upgrade(alembic_config(url), "head")
    admin = {"FIRST_ADMIN_USERNAME": ADMIN_USER, "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with serving(tmp_path, url, **admin) as (base, _server):
        values = {"API": base, "ADMIN_USER": ADMIN_USER, "ADMIN_PASSWORD": ADMIN_PASSWORD}
        script = "\n".join(
            [with_values(quickstart_block(), values), f"echo '{BETWEEN}'", *api_guide_blocks()]
        )
        done = run_bash(script, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    quick, _, guide = done.stdout.partition(BETWEEN)

    # README: the create, the list with its count, the ETag, the 304, the PATCH, then the 412.
    assert '"emp_id":1001' in quick and '"city":"London"' in quick
    assert lines_matching(r"^x-total-count: 1\r?$", quick)
    assert lines_matching(r'^ETag: "[0-9a-f]{32}-1"$', quick)
    assert lines_matching(r"^304$", quick)
    assert '"city":"Paris"' in quick and '"version":2' in quick
    assert lines_matching(r"^412$", quick)

    # docs/api.md: /v1 and the root path alike, a create under /v1 and its links; the walk, a
    # conditional PATCH and its stale tag, a polled page, a replayed create, the history, and CSV
    # in and out.
    assert '"emp_id":1001' in guide
    assert lines_matching(r"^the same answer$", guide)
    assert lines_matching(r"^location: /v1/employees/1003$", guide)
    assert lines_matching(r"^link: <http://127\.0\.0\.1:\d+/v1/employees/\?", guide)
    assert lines_matching(r'^etag: "[0-9a-f]{32}-3"$', guide)
    assert "The record changed since you read it" in guide
    (page_tag,) = lines_matching(r'^page ETag: (W/"[0-9a-f]{32}")$', guide)
    assert lines_matching(r"^HTTP/1\.1 304 Not Modified$", guide) == ["HTTP/1.1 304 Not Modified"]
    assert lines_matching(r"^etag: (W/.*)$", guide) == [page_tag]
    assert len(lines_matching(r"^HTTP/1\.1 201 Created$", guide)) == 3
    assert lines_matching(r"^idempotent-replayed: true$", guide) == ["idempotent-replayed: true"]
    assert '"action":"update","emp_id":1001,"version":3' in guide
    assert '{"valid":2}' in guide and '{"created":2}' in guide
    exported = guide[guide.index("emp_id,emp_name,city,country,emp_dob") :].splitlines()
    assert exported[1:4] == [  # country "united", by name; Ada moved to France above
        "1002,Alan Turing,Wilmslow,United Kingdom,1912-06-23",
        "2001,Grace Hopper,New York,United States,1906-12-09",
        '2002,"Hamilton, Margaret",Paoli,United States,1936-08-17',
    ]
    assert not exported[4].startswith(("1", "2"))  # no other row

    # The schema compressed for curl --compressed, and its plain size.
    assert lines_matching(r"^content-encoding: (zstd|br|gzip)$", guide)
    assert lines_matching(r"^vary: Accept-Encoding$", guide)
    (wire,) = map(int, lines_matching(r"^on the wire: (\d+) bytes$", guide))
    (plain,) = map(int, lines_matching(r"^uncompressed: (\d+) bytes$", guide))
    assert wire * 4 < plain
