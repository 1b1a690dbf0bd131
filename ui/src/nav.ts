// Client-side routes under /ui/ (the router answers index.html for any of them): history.pushState and a
// listener per component that reads the path.

import { useEffect, useState } from "react";

export const BASE = "/ui";

export function currentPath(): string {
  const path = window.location.pathname.startsWith(BASE) ? window.location.pathname.slice(BASE.length) : "/";
  return path || "/";
}

export function navigate(to: string, replace = false): void {
  const url = BASE + (to.startsWith("/") ? to : `/${to}`);
  if (replace) window.history.replaceState(null, "", url);
  else window.history.pushState(null, "", url);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

export function usePath(): [string, URLSearchParams] {
  const [state, setState] = useState(() => [currentPath(), window.location.search] as const);
  useEffect(() => {
    const on = () => setState([currentPath(), window.location.search]);
    window.addEventListener("popstate", on);
    return () => window.removeEventListener("popstate", on);
  }, []);
  return [state[0], new URLSearchParams(state[1])];
}

/** Parse `/runs/ID` style paths: the route's name and its parameters. */
export function route(path: string): { name: string; params: string[] } {
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { name: "runs", params: [] };
  return { name: parts[0], params: parts.slice(1) };
}

export function href(to: string): string {
  return BASE + to;
}
