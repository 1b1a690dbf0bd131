// Live data: a run and the runs list followed over the router's event streams (fetch + the SSE parser, the
// token in a header), reconnecting when a stream drops, and polling when streams cannot be had at all.

import { useCallback, useEffect, useRef, useState } from "react";
import { Api, ApiError, type Query } from "./api";
import { RUN_FINAL } from "./states";
import type { Counts, RunRecord, RunSummary } from "./types";

export const POLL_MS = 2000;
const MAX_STREAM_FAILURES = 3;

export type Mode = "stream" | "polling" | "done";

/** Apply a runs-stream event to the page: update the changed runs, keep the server's order. */
export function mergeRuns(current: Map<string, RunSummary>, changed: RunSummary[], order: string[]): RunSummary[] {
  for (const run of changed) current.set(run.id, run);
  for (const id of [...current.keys()]) if (!order.includes(id)) current.delete(id);
  return order.map((id) => current.get(id)).filter((r): r is RunSummary => r !== undefined);
}

function sleep(msValue: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, msValue);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** A run, live: the run's stream until it ends; polling GET /runs/{id} if streams fail. `restart()` after an
 * action (a redrive makes a finished run move again). */
export function useRun(api: Api, runId: string) {
  const [run, setRun] = useState<RunRecord | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [mode, setMode] = useState<Mode>("stream");
  const [generation, setGeneration] = useState(0);
  const restart = useCallback(() => setGeneration((g) => g + 1), []);

  useEffect(() => {
    const abort = new AbortController();
    const signal = abort.signal;
    let failures = 0;
    (async () => {
      while (!signal.aborted) {
        if (failures < MAX_STREAM_FAILURES) {
          let ended = false;
          try {
            setMode("stream");
            const retry = await api.stream(`/runs/${encodeURIComponent(runId)}/stream`, {}, (event) => {
              if (event.event === "run") {
                failures = 0;
                setError(null);
                setRun(JSON.parse(event.data) as RunRecord);
              } else if (event.event === "end") ended = true;
            }, signal);
            if (ended) {
              setMode("done");
              return;
            }
            await sleep(retry ?? 1000, signal); // the server closed it (its time limit, a restart): reconnect
          } catch (err) {
            if (signal.aborted) return;
            if (err instanceof ApiError && (err.status === 404 || err.status === 401 || err.status === 403)) {
              setError(err);
              return;
            }
            failures += 1;
            await sleep(1000, signal);
          }
        } else {
          setMode("polling");
          try {
            const found = await api.get<RunRecord>(`/runs/${encodeURIComponent(runId)}`, undefined, signal);
            setRun(found);
            setError(null);
            if (RUN_FINAL.has(found.status)) {
              setMode("done");
              return;
            }
          } catch (err) {
            if (signal.aborted) return;
            setError(err as ApiError);
          }
          await sleep(POLL_MS, signal);
        }
      }
    })();
    return () => abort.abort();
  }, [api, runId, generation]);

  return { run, error, mode, restart };
}

/** The newest runs and the counts of the last hour, live (pipeline and status filters); with other
 * filters (a time window, a trigger type, a later page) the list is polled instead. */
export function useRunsList(api: Api, query: Query, live: boolean) {
  const [runs, setRuns] = useState<RunSummary[] | null>(null);
  const [counts, setCounts] = useState<Counts | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [mode, setMode] = useState<Mode>("stream");
  const key = JSON.stringify(query);
  const queryRef = useRef(query);
  queryRef.current = query;

  useEffect(() => {
    const abort = new AbortController();
    const signal = abort.signal;
    const q = queryRef.current;
    let failures = 0;
    (async () => {
      while (!signal.aborted) {
        if (live && failures < MAX_STREAM_FAILURES) {
          const page = new Map<string, RunSummary>();
          try {
            setMode("stream");
            const retry = await api.stream(
              "/runs/stream",
              { pipeline: q.pipeline, status: q.status, limit: q.limit },
              (event) => {
                failures = 0;
                if (event.event === "runs") {
                  const data = JSON.parse(event.data) as { runs: RunSummary[]; order: string[] };
                  setRuns(mergeRuns(page, data.runs, data.order));
                  setError(null);
                } else if (event.event === "counts") setCounts(JSON.parse(event.data) as Counts);
              },
              signal,
            );
            await sleep(retry ?? 1000, signal);
          } catch (err) {
            if (signal.aborted) return;
            if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
              setError(err);
              return;
            }
            failures += 1;
            await sleep(1000, signal);
          }
        } else {
          setMode("polling");
          try {
            const [found, c] = await Promise.all([
              api.get<RunSummary[]>("/runs", { ...q, view: "summary" }, signal),
              api.get<Counts>("/runs/counts", { since: "1h" }, signal),
            ]);
            setRuns(found);
            setCounts(c);
            setError(null);
          } catch (err) {
            if (signal.aborted) return;
            setError(err as ApiError);
          }
          await sleep(POLL_MS, signal);
        }
      }
    })();
    return () => abort.abort();
  }, [api, key, live]);

  return { runs, counts, error, mode };
}

/** Any GET, loaded once per `deps` change and again every `everyMs` when given. */
export function useGet<T>(api: Api, path: string | null, query?: Query, everyMs?: number) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [tick, setTick] = useState(0);
  const key = JSON.stringify(query ?? {});
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    if (path === null) return;
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = () => {
      api
        .get<T>(path, JSON.parse(key) as Query, abort.signal)
        .then((d) => {
          setData(d);
          setError(null);
        })
        .catch((err: unknown) => {
          if (!abort.signal.aborted) setError(err as ApiError);
        })
        .finally(() => {
          if (everyMs && !abort.signal.aborted) timer = setTimeout(load, everyMs);
        });
    };
    load();
    return () => {
      abort.abort();
      if (timer) clearTimeout(timer);
    };
  }, [api, path, key, everyMs, tick]);
  return { data, error, reload };
}
