import { lazy, Suspense, useCallback, useEffect, useMemo, useState } from "react";
import { Api, ApiError } from "./api";
import { navigate, route, usePath, href } from "./nav";
import { SessionContext, can, saveToken, savedToken, useSession as useSessionSafe, type Session } from "./session";
import type { Whoami } from "./types";
import { Login } from "./pages/Login";
import { RunsPage } from "./pages/Runs";
import { RunPage } from "./pages/Run";
import { PipelinesPage } from "./pages/Pipelines";
import { PipelinePage } from "./pages/Pipeline";
import { EventsPage } from "./pages/Events";
import { useShortcuts, ShortcutHelp } from "./components/Shortcuts";

// the editor (and the yaml package) is its own chunk, loaded on the first editor page
const EditorPage = lazy(() => import("./editor/Editor"));

type Theme = "light" | "dark" | "system";

function useTheme(): [Theme, () => void] {
  const [theme, setTheme] = useState<Theme>(() => (localStorage.getItem("knflow.theme") as Theme) || "system");
  useEffect(() => {
    if (theme === "system") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    localStorage.setItem("knflow.theme", theme);
  }, [theme]);
  const dark = () => window.matchMedia("(prefers-color-scheme: dark)").matches;
  const toggle = useCallback(
    () => setTheme((t) => ((t === "system" ? dark() : t === "dark") ? "light" : "dark")),
    [],
  );
  return [theme, toggle];
}

export function App() {
  const [token, setToken] = useState<string | null>(savedToken());
  const [who, setWho] = useState<Whoami | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [checking, setChecking] = useState(true);
  const [theme, toggleTheme] = useTheme();
  const api = useMemo(() => new Api(window.location.origin, token), [token]);

  const signOut = useCallback(() => {
    saveToken(null);
    setToken(null);
    setWho(null);
  }, []);

  useEffect(() => {
    setChecking(true);
    api
      .get<Whoami>("/whoami")
      .then((w) => {
        setWho(w);
        setProblem(null);
      })
      .catch((err: ApiError) => {
        setWho(null);
        if (token) {
          setProblem(err.status === 401 ? "The router does not accept this token (unknown or revoked)." : err.message);
          saveToken(null);
          setToken(null);
        }
      })
      .finally(() => setChecking(false));
  }, [api, token]);

  useEffect(() => {
    api.onUnauthorized = () => {
      if (token) {
        setProblem("The token was refused (revoked?): sign in again.");
        signOut();
      }
    };
  }, [api, token, signOut]);

  const signIn = (given: string) => {
    saveToken(given);
    setProblem(null);
    setToken(given);
  };

  if (checking && !who) return <div className="center muted">Connecting to the router…</div>;
  if (!who) return <Login onSignIn={signIn} problem={problem} />;
  const session: Session = { api, who, can: (scope) => can(who, scope), signOut };
  return (
    <SessionContext.Provider value={session}>
      <Shell theme={theme} toggleTheme={toggleTheme} />
    </SessionContext.Provider>
  );
}

function Shell({ theme, toggleTheme }: { theme: Theme; toggleTheme: () => void }) {
  const [path, query] = usePath();
  const { name, params } = route(path);
  const [help, setHelp] = useState(false);
  useShortcuts({
    "g r": () => navigate("/runs"),
    "g p": () => navigate("/pipelines"),
    "g e": () => navigate("/events"),
    t: toggleTheme,
    "?": () => setHelp((h) => !h),
  });
  let page;
  if (name === "runs" && params.length === 0) page = <RunsPage query={query} />;
  else if (name === "runs") page = <RunPage runId={params[0]} node={params[1] === "nodes" ? params[2] : undefined} />;
  else if (name === "pipelines" && params.length === 0) page = <PipelinesPage />;
  else if (name === "pipelines" && params.length === 1 && params[0] === "new") page = <Suspense fallback={<div className="page muted">loading the editor…</div>}><EditorPage key="editor" name={null} /></Suspense>;
  else if (name === "pipelines" && params[1] === "edit") page = <Suspense fallback={<div className="page muted">loading the editor…</div>}><EditorPage key="editor" name={params[0]} /></Suspense>;
  else if (name === "pipelines") page = <PipelinePage name={params[0]} />;
  else if (name === "events") page = <EventsPage />;
  else page = <div className="page"><h1>Not found</h1><p>No page at {path}. <a href={href("/runs")}>Runs</a></p></div>;
  return (
    <div className="shell">
      <TopBar active={name} theme={theme} toggleTheme={toggleTheme} showHelp={() => setHelp(true)} />
      <main>{page}</main>
      {help && <ShortcutHelp onClose={() => setHelp(false)} />}
    </div>
  );
}

function TopBar(props: { active: string; theme: Theme; toggleTheme: () => void; showHelp: () => void }) {
  const { who, signOut } = useSessionSafe();
  const link = (to: string, label: string, name: string) => (
    <a
      href={href(to)}
      className={props.active === name ? "active" : ""}
      onClick={(e) => {
        e.preventDefault();
        navigate(to);
      }}
    >
      {label}
    </a>
  );
  return (
    <header className="topbar">
      <span className="brand">knflow</span>
      <nav>
        {link("/runs", "Runs", "runs")}
        {link("/pipelines", "Pipelines", "pipelines")}
        {link("/events", "Events", "events")}
      </nav>
      <span className="spacer" />
      <span className="who" data-testid="who">
        {who.open ? "open router" : who.name} · <b>{who.scope}</b>
      </span>
      <button className="ghost" onClick={props.showHelp} title="Keyboard shortcuts (?)">?</button>
      <button className="ghost" onClick={props.toggleTheme} title="Light or dark (t)" data-testid="theme">
        {props.theme === "dark" ? "☀" : "☾"}
      </button>
      {!who.open && (
        <button className="ghost" onClick={signOut}>
          Sign out
        </button>
      )}
    </header>
  );
}
