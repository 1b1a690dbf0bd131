// The signed-in session: the API token in sessionStorage (never in the URL, gone with the tab), and what the
// router says the token may do (GET /whoami).

import { createContext, useContext } from "react";
import { Api } from "./api";
import type { Whoami } from "./types";

export const TOKEN_KEY = "knflow.token";

export function savedToken(): string | null {
  try {
    return window.sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function saveToken(token: string | null): void {
  if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
  else window.sessionStorage.removeItem(TOKEN_KEY);
}

export interface Session {
  api: Api;
  who: Whoami;
  can: (scope: "read" | "run" | "operate" | "admin") => boolean;
  signOut: () => void;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside a signed-in page");
  return s;
}

export function can(who: Whoami, scope: string): boolean {
  return who.scopes.includes(scope);
}
