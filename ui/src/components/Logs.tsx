import { useEffect, useRef, useState } from "react";
import { Api, ApiError } from "../api";
import type { LogLine, LogPage } from "../types";
import { clock } from "../format";

export const FOLLOW_MS = 1000;
const MAX_LINES = 5000;

/** A node attempt's log lines (GET /runs/{id}/logs), following new ones while the node runs. */
export function Logs({ api, runId, node, attempt, live }: { api: Api; runId: string; node: string; attempt: number; live: boolean }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [truncated, setTruncated] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const liveRef = useRef(live);
  liveRef.current = live;
  const end = useRef<HTMLDivElement>(null);

  useEffect(() => {
    setLines([]);
    setTruncated(false);
    setError(null);
    const abort = new AbortController();
    let after: number | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let lastRound = false;
    const load = async () => {
      try {
        for (;;) {
          const page: LogPage = await api.get<LogPage>(
            `/runs/${encodeURIComponent(runId)}/logs`,
            { node, attempt, after, limit: 500 },
            abort.signal,
          );
          if (page.lines.length) setLines((old) => [...old, ...page.lines].slice(-MAX_LINES));
          if (page.truncated) setTruncated(true);
          const next = page.next_after ?? (page.lines.length ? page.lines[page.lines.length - 1].seq : after);
          const more = page.lines.length > 0 && next !== after;
          after = next;
          if (!more || page.lines.length < 500) break;
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
    return <p className="muted">{error.status === 404 ? "This router keeps no node logs." : error.message}</p>;
  }
  return (
    <div className="logs" data-testid="logs">
      {truncated && <div className="muted">(earlier lines were cut: the router keeps the last ones of each attempt)</div>}
      {lines.length === 0 && <div className="muted">{live ? "waiting for log lines…" : "no log lines"}</div>}
      {lines.map((l) => (
        <div key={`${l.attempt}:${l.seq}`} className={`logline log-${l.stream} lvl-${l.level}`} data-testid="log-line">
          <span className="muted">{clock(l.at).slice(11)}</span> <span className="lvl">{l.stream === "log" ? l.level : l.stream}</span>{" "}
          <span>{l.message}</span>
          {l.fields && Object.keys(l.fields).length > 0 && <span className="muted"> {JSON.stringify(l.fields)}</span>}
        </div>
      ))}
      <div ref={end} />
    </div>
  );
}
