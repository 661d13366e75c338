// The router: #/page?params views of one page; the overview refreshes every 10 s.
const REFRESH_MS = 10000;
const NAV = [["", "Overview"], ["models", "Models"], ["experiments", "Experiments"], ["labels", "Label queue"],
  ["users", "Users"], ["items", "Items"], ["value", "Value of data"], ["decisions", "Decisions"]];
let timer = null;
let generation = 0;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [page, query] = raw.split("?");
  return [page || "", new URLSearchParams(query || "")];
}

async function route() {
  const [page, params] = parseHash();
  if (params.get("key")) {  // a link with the key: keep it in this tab, drop it from the address
    setKey(params.get("key"));
    params.delete("key");
    history.replaceState(null, "", `#/${page}${params.toString() ? `?${params}` : ""}`);
  }
  const mine = ++generation;
  clearInterval(timer);
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", link.dataset.page === page);
  drawKeyState();
  const view = $("view");
  view.dataset.page = page || "overview";
  view.dataset.state = "loading";
  try {
    if (!page) {
      await refreshOverview(mine);
      if (!REPORT) timer = setInterval(() => refreshOverview(mine), REFRESH_MS);
    } else if (REPORT) {
      replace(view, card("Live page", empty("This report holds the overview only; open the live dashboard (flywheel serve) for this page.")));
    } else if (PAGES[page]) {
      await PAGES[page](view, params);
    } else {
      replace(view, card("Not found", empty(`There is no page "${page}".`)));
    }
    if (mine === generation) view.dataset.state = "ready";
  } catch (error) {
    if (mine !== generation) return;
    if (!(error instanceof ApiError)) console.warn(error);
    append(view, errorBox(error));
    view.dataset.state = "error";
  }
}

async function refreshOverview(mine) {
  let data = REPORT;
  if (!data) {
    const query = new URLSearchParams();
    const page = new URLSearchParams(location.search);
    for (const name of ["from", "to"]) if (page.get(name)) query.set(name, page.get(name));
    data = await api(`/v1/dashboard?${query}`);
  }
  if (mine !== generation) return;
  drawOverview(data, $("view"));
  $("status").textContent = (data.kpis.note ? data.kpis.note + " · " : "") + `updated ${new Date(data.generated_at * 1000).toLocaleTimeString()}`;
}

function drawKeyState() {
  const unlocked = adminUnlocked();
  $("key-state").textContent = REPORT ? "report (read-only)" : unlocked ? "key set: actions shown" : "read-only";
  $("key-state").className = `pill ${unlocked ? "champion" : "retired"}`;
  $("key-forget").hidden = !getKey();
}

function setUp() {
  replace($("nav"), NAV.map(([page, label]) => h("a", { href: `#/${page}`, "data-page": page }, label)));
  if (REPORT) $("key-form").hidden = true;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey($("key-input").value.trim());
    $("key-input").value = "";
    route();
  });
  $("key-forget").addEventListener("click", () => { setKey(""); route(); });
  // Older links carried the key as #key=...; keep it in this tab and drop it from the address.
  const legacy = new URLSearchParams(location.hash.slice(1));
  if (legacy.get("key")) { setKey(legacy.get("key")); history.replaceState(null, "", "#/"); }
  window.addEventListener("hashchange", route);
  route();
}
setUp();
