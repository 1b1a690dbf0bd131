import { useEffect, useRef, useState } from "react";
import { Api, ApiError } from "../api";
import type { LogLine, LogPage } from "../types";
import { clock } from "../format";

export const FOLLOW_MS = 1000;
const MAX_LINES = 5000;
const PAGE = 500; // the router answers at most 1,000 lines a call

/** How many lines the tries of a page dropped past their bounds (`truncated`: by "NODE:ATTEMPT"). */
export function dropped(truncated: Record<string, number> | undefined): number {
  return Object.values(truncated ?? {}).reduce((sum, n) => sum + n, 0);
}

/** A node attempt's log lines (GET /runs/{id}/logs), following new ones (`after` = the last `next_after`) while
 * the node runs: a try's lines reach the router with its outcome, so they appear as each try ends. */
export function Logs({ api, runId, node, attempt, live }: { api: Api; runId: string; node: string; attempt: number; live: boolean }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [cut, setCut] = useState<Record<string, number>>({});
  const [error, setError] = useState<ApiError | null>(null);
  const liveRef = useRef(live);
  liveRef.current = live;
  const end = useRef<HTMLDivElement>(null);

  useEffect(() => {
    setLines([]);
    setCut({});
    setError(null);
    const abort = new AbortController();
    let after = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let lastRound = false;
    const load = async () => {
      try {
        for (;;) {
          const page: LogPage = await api.get<LogPage>(
            `/runs/${encodeURIComponent(runId)}/logs`,
            { node, attempt, after, limit: PAGE },
            abort.signal,
          );
          if (page.lines.length) setLines((old) => [...old, ...page.lines].slice(-MAX_LINES));
          if (dropped(page.truncated) > 0) setCut(page.truncated);
          const moved = page.next_after > after;
          after = page.next_after;
          if (!moved || page.lines.length < PAGE) break;
        }
        setError(null);
      } catch (err) {
        if (abort.signal.aborted) return;
        setError(err as ApiError);
      }
      if (abort.signal.aborted) return;
      if (liveRef.current || !lastRound) {
        lastRound = !liveRef.current; // one more read once the node is final: its last lines
        timer = setTimeout(() => void load(), FOLLOW_MS);
      }
    };
    void load();
    return () => {
      abort.abort();
      if (timer) clearTimeout(timer);
    };
  }, [api, runId, node, attempt]);

  useEffect(() => {
    end.current?.scrollIntoView({ block: "nearest" });
  }, [lines.length]);

  if (error && lines.length === 0) {
    return <p className="muted">{error.message}</p>;
  }
  return (
    <div className="logs" data-testid="logs">
      {dropped(cut) > 0 && (
        <div className="muted" data-testid="logs-truncated">
          ({dropped(cut)} lines were dropped: a try keeps its last 1,000 lines or 256 KiB)
        </div>
      )}
      {lines.length === 0 && <div className="muted">{live ? "waiting for log lines…" : "no log lines"}</div>}
      {lines.map((l) => (
        <div key={`${l.attempt}:${l.seq}`} className={`logline log-${l.stream} lvl-${l.level ?? l.stream}`} data-testid="log-line">
          <span className="muted">{clock(l.at).slice(11)}</span> <span className="lvl">{l.stream === "log" ? l.level : l.stream}</span>{" "}
          {l.node !== node && <span className="mono muted">{l.node} </span>}
          <span>{l.message}</span>
          {l.fields && Object.keys(l.fields).length > 0 && <span className="muted"> {JSON.stringify(l.fields)}</span>}
        </div>
      ))}
      <div ref={end} />
    </div>
  );
}
