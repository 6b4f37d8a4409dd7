// Live updates for the /ui pages. The pages work without this file, except for these:
// the overview refreshes itself, a running session's page follows its state and driver log through
// the JSON API, and Delete calls the API's DELETE with the CSRF header. Text goes in as textContent,
// never as HTML.
"use strict";

const OVERVIEW_REFRESH_MS = 5000;
const FOLLOW_MS = 1000;
const TERMINAL = new Set(["success", "dead", "killed", "error"]);

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function refreshOverview() {
  const sections = document.querySelectorAll("section[data-refresh]");
  if (!sections.length) return;
  setInterval(async () => {
    if (document.visibilityState !== "visible") return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const section of sections) {
        const replacement = fresh.getElementById(section.id);
        if (replacement) section.replaceChildren(...replacement.childNodes);
      }
    } catch (err) {
      // the server is restarting or gone: the next round tries again
    }
  }, OVERVIEW_REFRESH_MS);
}

function followLog() {
  const log = document.getElementById("log");
  if (!log || !log.dataset.follow) return;
  const api = log.dataset.follow;
  const stateBadge = document.getElementById("state");
  const total = document.getElementById("log-total");
  let next = Number(log.dataset.next);
  let busy = false;

  async function readNewLines() {
    const page = await getJson(`${api}/log?from=${next}&size=1000`);
    if (page.log.length) {
      const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 4;
      log.append(document.createTextNode(page.log.join("\n") + "\n"));
      next = page.from + page.log.length;
      if (atBottom) window.scrollTo(0, document.body.scrollHeight);
    }
    total.textContent = String(page.total);
  }

  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      await readNewLines();
      const { state } = await getJson(`${api}/state`);
      if (state !== stateBadge.textContent) {
        stateBadge.textContent = state;
        stateBadge.className = `state state-${state}`;
      }
      if (TERMINAL.has(state)) {
        clearInterval(timer);
        await readNewLines();
        location.reload(); // the finished view: finishedAt, expires in
      }
    } catch (err) {
      // deleted meanwhile, or the server is away: try again next round
    } finally {
      busy = false;
    }
  }, FOLLOW_MS);
}

function deleteButton() {
  const button = document.getElementById("delete");
  if (!button) return;
  const result = document.getElementById("delete-result");
  button.addEventListener("click", async () => {
    if (!confirm(`${button.textContent}? A running driver is killed first.`)) return;
    button.disabled = true;
    result.textContent = "deleting…";
    try {
      const response = await fetch(button.dataset.api, {
        method: "DELETE",
        credentials: "same-origin",
        headers: { [button.dataset.csrf]: "livy-ui", Accept: "application/json" },
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok) {
        location.assign("/ui");
        return;
      }
      result.textContent = `not deleted: ${response.status} ${body.msg || ""}`;
    } catch (err) {
      result.textContent = `not deleted: ${err}`;
    }
    button.disabled = false;
  });
}

refreshOverview();
followLog();
deleteButton();
