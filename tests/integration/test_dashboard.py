"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
service whose data comes from real pushes through the installed hooks, a real worker run and
real events.

Without chromium (`make system-packages`) or Playwright (`make install`) the tests skip with
the reason; under `CI=true` they fail instead. Screenshots go to `test-artifacts/` at the
repository root (or `$TEST_ARTIFACTS_DIR`), which git ignores.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from integrator.api.app import create_app
from integrator.api.dashboard import ASSETS
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready
from tests.gitrepos import Canonical, git
from tests.support import REPO_ROOT, ServiceProcess, TokenMaker
from tests.worker_support import SHORT_LEASE, WorkerWorld

CHROMIUM = Path("/usr/bin/chromium")
#: Markup a pusher can put in a path or a branch name: it must read as text, never run.
XSS_PATH = "<img src=x onerror=window.__pwned=1>.txt"
XSS_BRANCH = "xss/<img/src=x/onerror=window.__pwned=1>"
#: A check that fails on the branch that adds fail.txt, printing markup.
CHECK_OUTPUT = "<script>alert(document.domain)</script>"
CHECK = f"test ! -f fail.txt || {{ echo '{CHECK_OUTPUT}'; exit 1; }}"
#: A phone's width, in CSS pixels.
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


def artifacts_dir() -> Path:
    path = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO_ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, through Playwright (its own browser download is not
    used: the executable is the system package's)."""
    missing = [] if os.access(CHROMIUM, os.X_OK) else ["chromium (`make system-packages`)"]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright (`make install`)")
    if missing:
        reason = f"the dashboard's browser test needs {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


class Story:
    """What the test made happen, to compare with what the page says."""

    def __init__(self, world: WorkerWorld, reader: str) -> None:
        self.world = world
        self.reader = reader
        self.operator_name = ""
        self.rollback_reason = "back to shadow after the dashboard rehearsal"
        #: A commit put on main in cutover by someone on the git server, around the hooks.
        self.rogue = ""


def make_story(world: WorkerWorld, tokens: TokenMaker) -> Story:
    """A shadow run with history: a forced cutover in which one candidate integrated, one
    blocked on a conflict (its path is markup) and a commit reached main around the guard; a
    rollback, human pushes to main that cutover would refuse, queued candidates (one in the
    hotfix lane), one waiting for its review, and a lease holder."""
    story = Story(world, tokens("reader", "dashboard-reader"))
    operator = world.get("/v1/whoami")
    story.operator_name = operator["name"]
    clean = world.ready("clean")
    conflicting = world.ready("conflicting", path=XSS_PATH, content="theirs\n")
    failing = world.ready("failing-check", path="fail.txt")
    world.canonical.new_commit_on_main("alice-1")
    world.canonical.commit(XSS_PATH, "ours\n", "alice edits the same file")
    assert world.canonical.push_as("alice", "main").returncode == 0
    world.cutover()
    assert world.run_worker("--once", "--check", CHECK).returncode == 0
    assert world.candidate(clean)["status"] == "integrated"
    assert world.candidate(conflicting)["status"] == "blocked"
    assert world.candidate(failing)["status"] == "blocked"
    story.rogue = world.canonical.new_commit_on_main("rogue")
    assert world.canonical.push_as("mallory", f"{story.rogue}:refs/heads/side").returncode == 0
    git("update-ref", "refs/heads/main", story.rogue, cwd=world.canonical.bare)
    rolled = world.post("/v1/rollback", {"reason": story.rollback_reason}, world.operator)
    expect(world, rolled, 200)
    world.canonical.new_commit_on_main("alice-2")
    assert world.canonical.push_as("alice", "main").returncode == 0
    world.canonical.new_commit_on_main("bob-1")
    assert world.canonical.push_as("bob", "main").returncode == 0
    for slug in ("first", "second", "urgent"):
        world.ready(slug)
    promoted = world.post("/v1/slugs/urgent/promote", {"reason": "prod is down"}, world.operator)
    expect(world, promoted, 200)
    sha = world.canonical.branch(XSS_BRANCH)
    needs_review = finalize_ready("needs-review", XSS_BRANCH, sha)  # no review_approved
    for envelope in (branch_pushed(XSS_BRANCH, sha), needs_review):
        response = world.post("/v1/events", envelope, world.reporter)
        expect(world, response, 201)
    held = world.post("/v1/lease/acquire", {"holder": "runner-7"}, world.integrator)
    expect(world, held, 200)
    return story


def expect(world: WorkerWorld, response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text


def log_tail(world: WorkerWorld, lines: int = 60) -> str:
    return "\n".join(world.service.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def story(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[Story]:
    lease = {**SHORT_LEASE, "lease_ttl_seconds": 600.0}
    world = WorkerWorld(settings, tmp_path, tokens, lease=lease).start().guard()
    try:
        try:
            made = make_story(world, tokens)
        except AssertionError as failure:  # a 500 says only that the log has the details
            raise AssertionError(f"{failure}\nservice log:\n{log_tail(world)}") from failure
        yield made
    finally:
        world.close()


class Watched:
    """A page with every console message, page error, failed request and error response."""

    def __init__(self, browser: Any, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        self.page.on("response", self._response)
        self.page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            where = message.location.get("url", "")
            self.problems.append(f"console {message.type}: {message.text} ({where})")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(f"{response.status}: {response.url}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url)
    page.get_by_label("Reader token").fill(token)
    page.get_by_role("button", name="Show the dashboard").click()
    page.locator("#mode-name").wait_for()


def texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def test_an_operator_reads_mode_lease_queue_blocked_and_shadow_evidence_on_a_phone(
    browser: Any, story: Story
) -> None:
    """What a person reads matches what happened; markup from git stays text; nothing
    overflows at 375 px; no console error, failed request or refused call."""
    world = story.world
    watched = Watched(browser, PHONE)
    page = watched.page
    try:
        sign_in(page, world.service.url + "/", story.reader)
        page.locator("#audit .body > *").first.wait_for()

        assert page.locator("#mode-name").inner_text().lower() == "shadow"
        change = page.locator("#mode-change").inner_text()
        assert story.operator_name in change and story.rollback_reason in change
        assert "runner-7" in page.locator("#lease-holder").inner_text()
        lease_text = page.locator("#lease").inner_text()
        assert re.search(r"Expires in\s+(\d+ min|\d+ s)", lease_text), lease_text

        queue = page.locator("#queue .items > li")
        slugs = [t.strip() for t in queue.locator(".title").all_inner_texts()]
        assert slugs[:3] == ["urgent", "first", "second"], slugs
        assert "hotfix lane" in queue.nth(0).inner_text()
        assert "Expected turn: next" in queue.nth(0).inner_text()
        assert "Expected turn: 1 ahead" in queue.nth(1).inner_text()
        waiting = queue.filter(has_text="needs-review")
        assert "no review_approved event for the slug yet" in waiting.inner_text()
        assert XSS_BRANCH in waiting.inner_text()

        followup = next(
            f for f in world.get("/v1/followups")["items"] if f["slug"] == "conflicting"
        )
        blocked = page.locator("#blocked .items > li").filter(has_text="conflicting")
        blocked_text = blocked.inner_text()
        assert "follow-up open" in blocked_text
        assert followup["next_action"] in blocked_text
        assert XSS_PATH in blocked_text  # the conflict's path, read as text
        failed = page.locator("#blocked .items > li").filter(has_text="failing-check")
        assert CHECK_OUTPUT in failed.locator("pre.tail").inner_text()  # the check's output
        assert "clean" in page.locator("#integrated").inner_text()

        groups = page.locator("#would-rejects .items > li")
        by_pusher = {g.locator(".title").inner_text(): g.inner_text() for g in groups.all()}
        assert set(by_pusher) == {"alice", "bob"}, by_pusher
        assert "refs/heads/main" in by_pusher["alice"] and "2 pushes" in by_pusher["alice"]
        assert "1 push" in by_pusher["bob"]
        hooks = page.locator("#hooks").inner_text()
        assert world.settings.repository_name in hooks and "has not seen cutover" in hooks
        checklist = texts(page, "#checklist .items > li .title")
        assert len(checklist) == len(world.get("/v1/evidence")["items"]) >= 5
        verdicts = page.locator("#verdicts").inner_text()
        assert "would reject" in verdicts and "bob" in verdicts
        assert "No active condition" in page.locator("#conditions").inner_text() or (
            page.locator("#conditions .badge").count() >= 1
        )
        assert "not paused" in page.locator("#pause").inner_text()
        verdict = page.locator("#audit-verdict").inner_text()
        assert "1 pushed around the guard after cutover" in verdict, verdict
        first = page.locator("#audit .items > li").first.inner_text()
        assert story.rogue[:10] in first and "pushed around the guard" in first, first
        assert "integrated by the queue" in page.locator("#audit").inner_text()

        assert page.locator("img").count() == 0 and page.locator("main script").count() == 0
        assert page.evaluate("window.__pwned") is None and not watched.dialogs
        width = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width[0] <= width[1], f"the page overflows a phone's width: {width}"
        page.screenshot(path=artifacts_dir() / "dashboard-phone.png", full_page=True)
        page.set_viewport_size(DESKTOP)
        page.screenshot(path=artifacts_dir() / "dashboard-desktop.png", full_page=True)

        assert story.reader not in page.url
        assert story.reader not in page.content()
        assert page.evaluate("JSON.stringify(localStorage)") == "{}"
        assert watched.context.cookies() == []
        stored = page.evaluate("Object.values(sessionStorage)")
        assert stored == [story.reader]

        assert watched.problems == []
    finally:
        watched.close()


# ---- the page's files and its reader endpoint, in-process (no browser needed) ------------


def update(ref: str, new: str, old: str = "a" * 40, ff: bool = True) -> dict[str, Any]:
    return {"ref": ref, "resolved_ref": ref, "old": old, "new": new, "fast_forward": ff,
            "first_parent": ff}  # fmt: skip


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    quiet = settings.model_copy(
        update={"conditions_interval_seconds": 0, "main_watch_interval_seconds": 0}
    )
    with TestClient(create_app(quiet)) as client:
        yield client


def test_the_page_and_its_files_need_no_token_and_forbid_other_origins_and_inline_script(
    client: TestClient,
) -> None:
    """`/` and the files it loads are public; everything else the page reads needs a token."""
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy
    for name in ("app.js", "style.css"):
        assert client.get(f"/dashboard/{name}").status_code == 200
    assert client.get("/dashboard/../api/app.py").status_code == 404
    assert client.get("/dashboard/missing.js").json()["code"] == "not_found"
    assert client.get("/v1/activity").status_code == 401
    shipped = {p.name for p in files("integrator.dashboard").iterdir() if p.is_file()}
    assert shipped - {"__init__.py"} == set(ASSETS)  # a new file is served, or it is not shipped


def test_activity_groups_would_rejects_by_pusher_and_ref_and_lists_verdicts_newest_first(
    client: TestClient, tokens: TokenMaker
) -> None:
    """Shadow pushes to main by alice (twice) and bob, and a branch push: two groups, the
    larger first, and every verdict newest first."""
    hook = {"Authorization": f"Bearer {tokens('hook')}"}
    reader = {"Authorization": f"Bearer {tokens('reader')}"}
    pushes = [
        ("alice", update("refs/heads/main", "1" * 40)),
        ("bob", update("refs/heads/main", "2" * 40, ff=False)),
        ("alice", update("refs/heads/main", "3" * 40)),
        ("alice", update("refs/heads/topic", "4" * 40, old="0" * 40)),
    ]
    for pusher, pushed in pushes:
        body = {"repository": "canonical", "hook_instance": "git1:/srv/canonical.git",
                "pusher": pusher, "identity_source": "plain", "updates": [pushed]}  # fmt: skip
        response = client.post("/v1/push-checks", json=body, headers=hook)
        assert response.status_code == 200, response.text

    found = client.get("/v1/activity", headers=reader, params={"limit": 3})

    assert found.status_code == 200, found.text
    body = found.json()
    groups = body["would_rejects"]["groups"]
    assert [(g["pusher"], g["ref"], g["count"]) for g in groups] == [
        ("alice", "refs/heads/main", 2),
        ("bob", "refs/heads/main", 1),
    ]
    assert body["would_rejects"]["total"] == 3 and groups[0]["last_new"] == "3" * 40
    assert [(v["type"], v["pusher"], v["new"]) for v in body["verdicts"]] == [
        ("push_allowed", "alice", "4" * 40),
        ("push_would_reject", "alice", "3" * 40),
        ("push_would_reject", "bob", "2" * 40),
    ]
    assert body["predictions"] == [] and body["integrated"] == []
    too_many = client.get("/v1/activity", headers=reader, params={"limit": 1000})
    assert too_many.status_code == 422 and too_many.json()["details"][0]["field"] == "limit"


#: For every visible element with text of its own: its colour against the first opaque
#: background behind it (WCAG 2 contrast ratio); the ones below 4.5:1.
LOW_CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (node) => {
    for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || c[3] === 1) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const node of document.querySelectorAll("body *")) {
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    if (!own || !node.getClientRects().length) continue;
    const style = getComputedStyle(node);
    if (style.visibility === "hidden") continue;
    const a = lum(rgb(style.color)), b = lum(background(node));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const text = node.textContent.trim().slice(0, 30);
    if (ratio < 4.5) low.push(`${node.tagName} "${text}" ${ratio.toFixed(2)}`);
  }
  return low;
}"""


@pytest.fixture
def service_on_repo(settings: Settings, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A service on a canonical repository with one commit and nothing else."""
    on_repo = settings.model_copy(update={"repo": str(Canonical(tmp_path).bare)})
    process = ServiceProcess(on_repo, tmp_path / "service.log")
    process.start()
    yield process
    process.stop()


def test_the_token_form_is_reached_by_keyboard_a_refused_token_asks_again_and_the_page_refreshes(
    browser: Any, service_on_repo: ServiceProcess, tokens: TokenMaker
) -> None:
    """Tab reaches the form, Enter signs in; a 401 brings the form back with the reason; the
    page shows a change made after it loaded, without a reload, and stops asking while
    hidden; landmarks, headings and a contrast of at least 4.5:1 everywhere."""
    reader = tokens("reader", "keyboard-reader")
    operator = {"Authorization": f"Bearer {tokens('operator')}"}
    watched = Watched(browser, DESKTOP)
    page = watched.page
    try:
        page.goto(service_on_repo.url + "/")
        page.get_by_label("Reader token").wait_for()
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "token":
                break
        assert page.evaluate("document.activeElement.id") == "token"
        page.keyboard.type("itg_not_a_real_token")
        page.keyboard.press("Enter")
        message = page.locator("#login-message")
        message.filter(has_text="refused").wait_for()
        assert page.get_by_label("Reader token").is_visible()
        assert page.evaluate("sessionStorage.length") == 0
        watched.problems = [p for p in watched.problems if "/v1/" not in p]  # the 401s

        page.get_by_label("Reader token").focus()
        page.keyboard.type(reader)
        page.keyboard.press("Enter")
        page.locator("#mode-name").wait_for()
        assert page.evaluate("document.activeElement.id") == "main"
        assert page.get_by_role("main").count() == 1 and page.get_by_role("banner").count() == 1
        assert page.get_by_role("heading", level=1).count() == 1
        for name in ("Mode", "Lease", "Queue", "Blocked candidates", "Cutover checklist",
                     "Recent push verdicts", "Active conditions", "Audit of main"):  # fmt: skip
            assert page.get_by_role("region", name=name, exact=True).count() == 1, name
        assert page.evaluate(LOW_CONTRAST) == []
        assert "not paused" in page.locator("#pause").inner_text()

        paused = httpx.post(
            service_on_repo.url + "/v1/queue/pause", json={"reason": "freeze"}, headers=operator
        )
        assert paused.status_code == 200, paused.text
        page.locator("#pause").filter(has_text="freeze").wait_for(timeout=15_000)
        assert page.evaluate(LOW_CONTRAST) == []

        page.evaluate(
            "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url))
        page.wait_for_timeout(6_000)
        assert asked == [], asked
        assert watched.problems == []
    finally:
        watched.close()


def test_a_panel_whose_endpoint_fails_says_why_and_the_others_still_show(
    browser: Any, service: ServiceProcess, tokens: TokenMaker
) -> None:
    """Without a canonical repository the audit cannot be read: its panel says so, the mode,
    the lease and the queue are shown all the same."""
    watched = Watched(browser, DESKTOP)
    try:
        sign_in(watched.page, service.url + "/", tokens("reader"))
        audit = watched.page.locator("#audit .message")
        audit.wait_for()
        assert "Could not read this" in audit.inner_text()
        assert "INTEGRATOR_REPO" in audit.inner_text()
        assert watched.page.locator("#mode-name").inner_text().lower() == "shadow"
        assert "Nobody holds the lease" in watched.page.locator("#lease").inner_text()
        assert "Nothing is waiting or queued" in watched.page.locator("#queue").inner_text()
    finally:
        watched.close()


def test_the_chain_under_test_shows_each_build_its_depth_and_base_on_a_phone(
    browser: Any, settings: Settings, tmp_path: Path, tokens: TokenMaker
) -> None:
    """A holder with a window of two records a build on main and one on top of it: the
    "Under test" panel lists both bottom first, each with its depth and what it rests on."""
    world = WorkerWorld(
        settings, tmp_path, tokens, lease={**SHORT_LEASE, "lease_ttl_seconds": 600.0}
    )
    world.start()
    watched = Watched(browser, PHONE)
    try:
        ids = [world.ready(slug) for slug in ("spec-a", "spec-b")]
        held = world.post("/v1/lease/acquire", {"holder": "runner-7"}, world.integrator)
        expect(world, held, 200)
        grant = {"epoch": held.json()["epoch"], "token": held.json()["token"]}
        for n in range(2):
            body = {**grant, "window": 2, "holding": ids[:n]}
            expect(world, world.post("/v1/queue/next", body, world.integrator), 200)
        main, first, second = world.canonical.head(), "1" * 40, "2" * 40
        for candidate, depth, base, commit in (
            (ids[0], 1, main, first),
            (ids[1], 2, first, second),
        ):
            build = {**grant, "attempt": f"00000000-0000-4000-8000-00000000000{depth}",
                     "state": "testing", "base": base, "sha": commit, "depth": depth,
                     "below": ids[: depth - 1]}  # fmt: skip
            recorded = world.post(
                f"/v1/candidates/{candidate}/speculation", build, world.integrator
            )
            expect(world, recorded, 200)
        sign_in(watched.page, world.service.url + "/", tokens("reader"))
        rows = watched.page.locator("#speculation .items > li")
        rows.nth(1).wait_for()
        assert [t.strip() for t in rows.locator(".line .title").all_inner_texts()] == [
            "spec-a", "spec-b"]  # fmt: skip
        assert "depth 1" in rows.nth(0).inner_text() and "on main" in rows.nth(0).inner_text()
        assert main[:10] in rows.nth(0).inner_text()
        assert "depth 2" in rows.nth(1).inner_text() and "on spec-a" in rows.nth(1).inner_text()
        width = watched.page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width[0] <= width[1], f"the page overflows a phone's width: {width}"
        assert watched.problems == []
    finally:
        watched.close()
        world.close()
