"""The operator console in a real browser: Debian's chromium, headless, driven by selenium
through Debian's chromedriver (both paths given: nothing is downloaded).

    console_peer.py '<json>'

The JSON names the admin and public URLs, where to save screenshots, an admin token to log
in with (or null on an unauthenticated loopback listener), the workloads and tokens the
Rust test made, and the mapping directory. Each step asserts on what the page renders;
the script prints a JSON summary of what it saw and exits non-zero on the first failure.
"""

import json
import os
import pathlib
import sys
import time

import requests

# Nothing to fetch: the browser and its driver are Debian's, at the paths given below.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
BROKEN = "version: 1\nrules:\n  - name: broken\n    match: { source: [unclosed\n"


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    return driver


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class Console:
    def __init__(self, args):
        self.args = args
        self.admin = args["admin_url"]
        self.out = pathlib.Path(args["out_dir"])
        self.out.mkdir(parents=True, exist_ok=True)
        self.driver = browser()
        # A form's submit navigates: a look at the page while it loads is aborted by the
        # navigation, and asked again, not failed.
        self.wait = WebDriverWait(self.driver, 15, ignored_exceptions=(WebDriverException,))
        self.seen = {}

    def open(self, path):
        self.driver.get(self.admin + path)
        return self.driver.find_element(By.TAG_NAME, "h1").text

    def shot(self, name):
        self.driver.save_screenshot(str(self.out / f"{name}.png"))

    def text(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def login(self):
        token = self.args.get("admin_token")
        heading = self.open("/ui/")
        if token is None:
            check(heading == "Overview", f"loopback: no login expected, got {heading!r}")
            return
        check(heading == "Tessera console", f"a login is required first, got {heading!r}")
        self.shot("login")
        self.driver.find_element(By.ID, "token").send_keys("not-a-token")
        self.driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        # The refusal is the next page: wait for it, or the look lands on the login page
        # the click is still leaving.
        self.wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "p.error"), "Login refused"))
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        self.wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overview"))
        check(token not in self.driver.page_source, "the token is never shown")
        cookie = self.driver.get_cookie("tessera_console")
        check(cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict", f"session cookie {cookie}")
        self.seen["logged_in_as"] = self.text(".who span")

    def overview(self):
        check(self.open("/ui/") == "Overview", "overview")
        figures = self.text("dl.figures")
        check("Allowed" in figures and "p99 latency" in figures, figures)
        check("internal-api" in self.text("section[aria-labelledby=targets] table"), "targets table")
        # The failing source's first fetch runs in the background from start.
        for _ in range(50):
            failing = self.text("section[aria-labelledby=sources] tbody")
            if "cannot connect" in failing:
                break
            time.sleep(0.2)
            self.open("/ui/")
        check("legacy-idp" in failing and "cannot connect" in failing, f"the key set fetch error: {failing}")
        check("s3cr3t" not in self.driver.page_source, "the key set URL's query is not shown")
        self.seen["overview"] = figures.replace("\n", " ")
        self.shot("overview")

    def directory(self):
        check(self.open("/ui/workloads") == "Workloads", "directory")
        rows = self.text("table.directory tbody")
        for who in (self.args["allowed_id"], self.args["denied_id"]):
            check(who in rows, f"{who} in the directory: {rows}")
        self.shot("workloads")

    def graph(self):
        check(self.open("/ui/graph?window=1h") == "Access graph", "graph")
        svg = self.driver.find_element(By.CSS_SELECTOR, "svg.graph")
        labels = " ".join(t.get_attribute("textContent") for t in svg.find_elements(By.TAG_NAME, "text"))
        edges = self.text("table.edges")
        for who in (self.args["allowed_id"], self.args["denied_id"]):
            check(who[:33] in labels and who in edges, f"{who} in the graph: {labels} / {edges}")
        check(svg.find_elements(By.CSS_SELECTOR, "path.edge.deny"), "a denied edge is drawn")
        self.shot("graph")

    def denied_workload(self):
        self.open("/ui/workloads")
        self.driver.find_element(By.LINK_TEXT, self.args["denied_id"]).click()
        self.wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Workload"))
        decided = self.text("section[aria-labelledby=decided] table")
        check(self.args["deny_rule"] in decided and "deny" in decided, f"the deciding rule: {decided}")
        self.seen["denied_by"] = self.args["deny_rule"]
        self.shot("workload")

    def trace(self):
        check(self.open("/ui/audit") == "Audit", "audit")
        self.shot("audit")
        issued = self.args["issued_token"]
        self.driver.find_element(By.ID, "trace-token").send_keys(issued)
        self.driver.find_element(By.CSS_SELECTOR, "#trace-form button").click()
        self.wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.found")))
        found = self.text("p.found")
        check(self.args["allowed_id"] in found, f"the issuing exchange: {found}")
        url = self.driver.current_url
        check("issued_token=sha256%3A" in url and issued not in url, f"only the fingerprint was sent: {url}")
        check(len(self.driver.find_elements(By.CSS_SELECTOR, "table.events tbody tr")) == 1, "one event")
        self.seen["traced"] = found
        self.shot("trace")

    def explain(self):
        check(self.open("/ui/explain") == "Explain", "explain")
        self.driver.find_element(By.ID, "identity").send_keys(self.args["explain_identity"])
        Select(self.driver.find_element(By.ID, "audience")).select_by_value(self.args["audience"])
        self.driver.find_element(By.CSS_SELECTOR, "form.explain button[type=submit]").click()
        self.wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "pre.explain-text")))
        report = self.text("pre.explain-text")
        check(f"deny by rule `{self.args['deny_rule']}`" in report, report)
        check("deny" in self.text("#decision"), "the decision heading")
        self.seen["explain"] = report.splitlines()[-1]
        self.shot("explain")

    def impact(self):
        check(self.open("/ui/impact") == "Impact of a change", "impact")
        proposed = self.out / "proposed"
        proposed.mkdir(exist_ok=True)
        (proposed / "10-rules.yaml").write_text(self.args["proposed_rules"])
        self.driver.find_element(By.ID, "proposed").send_keys(str(proposed))
        self.driver.find_element(By.XPATH, "//button[.='Replay']").click()
        self.wait.until(ec.presence_of_element_located((By.ID, "impact")))
        report = self.text("pre.explain-text")
        check(self.args["denied_id"] in report and "newly allowed" in self.text("#impact + p + table"), report)
        self.seen["impact"] = self.text("#impact + p")
        self.shot("impact")

    def exchange(self, token):
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token_type": JWT_TYPE,
            "subject_token": token,
            "audience": self.args["audience"],
        }
        return requests.post(self.args["public_url"] + "/v1/token", data=form, timeout=10).status_code

    def broken_rules(self):
        check(self.open("/ui/rules") == "Rules", "rules")
        check(self.args["deny_rule"] in self.text("main"), "the rules are listed")
        self.shot("rules")
        broken = pathlib.Path(self.args["mapping_dir"]) / "99-broken.yaml"
        broken.write_text(BROKEN)
        try:
            self.driver.find_element(By.XPATH, "//button[contains(., 'Reload the mapping directory')]").click()
            self.wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "div.error")))
            error = self.text("div.error")
            check("99-broken.yaml" in error and "keep serving" in error, error)
            check(self.args["deny_rule"] in self.text("main"), "the old rules are still listed")
            status = self.exchange(self.args["fresh_token"])
            check(status == 200, f"the old rules keep serving: exchange answered {status}")
            self.seen["reload_error"] = error.splitlines()[0]
            self.shot("rules-reload-error")
        finally:
            broken.unlink()

    def refusals(self):
        session = requests.Session()
        for c in self.driver.get_cookies():
            session.cookies.set(c["name"], c["value"], path=c.get("path", "/"))
        url = self.admin + "/ui/rules/reload"
        for form in ({"reload": "1"}, {"csrf": "forged"}):
            answer = session.post(url, data=form, allow_redirects=False, timeout=10)
            check(answer.status_code == 403 and "CSRF" in answer.text, f"POST {form}: {answer.status_code}")
        csrf = self.driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
        ok = session.post(url, data={"csrf": csrf}, allow_redirects=False, timeout=10)
        check(ok.status_code == 303, f"the page's own token is accepted: {ok.status_code}")
        foreign = session.get(self.admin + "/ui/", headers={"Host": "console.evil.example"}, timeout=10)
        check(foreign.status_code == 421 and "Overview" not in foreign.text, f"foreign Host: {foreign.status_code}")
        self.seen["refused"] = "POST without CSRF token: 403; foreign Host: 421"

    def run(self):
        try:
            self.login()
            self.overview()
            self.directory()
            self.graph()
            self.denied_workload()
            self.trace()
            self.explain()
            self.broken_rules()
            self.impact()
            self.refusals()
        except Exception:
            self.shot("failure")
            sys.stderr.write(self.driver.page_source[:4000] + "\n")
            raise
        finally:
            self.driver.quit()
        return self.seen


def main():
    args = json.loads(sys.argv[1])
    print(json.dumps(Console(args).run()))


if __name__ == "__main__":
    main()
