// The router's documents as the dashboard reads them (router/runs.py record, router/views.py run_summary).

export type RunStatus = "running" | "succeeded" | "failed" | "cancelled";
export type NodeStatus = "pending" | "scheduled" | "running" | "succeeded" | "failed" | "skipped" | "cancelled";

export interface ErrorDoc {
  type: string;
  message: string;
  detail?: unknown;
  node?: string;
  http_status?: number;
}

export interface Attempt {
  attempt: number;
  status: string;
  error: ErrorDoc | null;
  queued_at?: string | null;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
  queue_ms?: number | null;
}

export interface ItemRecord {
  status: NodeStatus;
  attempt: number;
  error: ErrorDoc | null;
  queued_at?: string | null;
  started_at?: string | null;
  finished_at?: string | null;
  duration_ms?: number | null;
  queue_ms?: number | null;
}

export interface NodeRecord {
  status: NodeStatus;
  output: unknown;
  error: ErrorDoc | null;
  attempt: number;
  queued_at?: string;
  started_at?: string;
  finished_at?: string;
  duration_ms?: number;
  queue_ms?: number;
  attempts?: Attempt[];
  items?: ItemRecord[]; // GET /runs/{id}; the run stream sends `progress` only
  progress?: FanProgress; // a fan-out node: its items by state, from the router's counters
}

export interface FanProgress {
  total: number;
  done: number;
  failed: number; // every end other than succeeded
  running: number;
  pending: number;
}

export interface ReplayEntry {
  at: string;
  by: string | null;
  kind: "redrive" | "rerun";
  from?: string | null;
  reset?: string[];
  previous_status?: string;
  items?: string[];
  of?: string;
  edited?: boolean;
}

export interface RunRecord {
  id: string;
  pipeline: string;
  status: RunStatus;
  created_at: string;
  finished_at: string | null;
  error: ErrorDoc | null;
  replay_of: string | null;
  replays: ReplayEntry[];
  trigger: Record<string, unknown>;
  nodes: Record<string, NodeRecord>;
}

export interface RunSummary {
  id: string;
  pipeline: string;
  status: RunStatus;
  created_at: string;
  finished_at: string | null;
  error: { type: string; message: string } | null;
  replay_of: string | null;
  replays: number;
  trigger: { type: string | null; source: string | null; id: string | null };
  nodes: Record<string, number>;
  items: Record<string, number>;
  version: number;
}

export interface Counts {
  statuses: Record<string, number>;
  pipelines: Record<string, Record<string, number>>;
}

export interface PipelineNode {
  id: string;
  function: string;
  description?: string;
  inputs?: unknown;
  config?: unknown;
  foreach?: unknown;
  loop?: unknown;
  replicas?: number;
  concurrency?: number;
}

export interface PipelineEdge {
  from: string;
  to: string;
  when?: string;
  branch?: string;
}

export interface Trigger {
  type: string;
  filter?: Record<string, string>;
  schedule?: string;
  timezone?: string;
  data?: unknown;
  auth?: { scheme: string; secret_env: string };
  path?: string;
  next_at?: string;
}

export interface PipelineDoc {
  apiVersion?: string;
  metadata: { name: string; description?: string };
  trigger?: Trigger;
  triggers?: Trigger[];
  on_failure?: string;
  nodes: PipelineNode[];
  edges: PipelineEdge[];
}

export interface PipelineDetails {
  pipeline: PipelineDoc;
  yaml: string;
  /** "stored": the text it was PUT (or loaded) as, comments kept; "generated": regenerated from its document */
  yaml_source: "stored" | "generated";
  triggers: Trigger[];
  inputs: { name: string; nodes: string[] }[];
}

export interface Whoami {
  name: string | null;
  scope: string;
  scopes: string[];
  open: boolean;
}

export interface LogLine {
  node: string;
  attempt: number;
  seq: number;
  at: string;
  stream: "log" | "stdout" | "stderr";
  level: string | null; // ctx.log's level; null for stdout and stderr
  message: string;
  fields?: Record<string, unknown> | null;
}

// GET /runs/{id}/logs: `truncated` counts the lines each try dropped past its bounds, by "NODE:ATTEMPT"
export interface LogPage {
  run_id: string;
  lines: LogLine[];
  truncated: Record<string, number>;
  next_after: number;
}

export interface NodeView {
  run: string;
  node: string;
  item: number | null;
  function: string | null;
  state: Record<string, unknown>;
  inputs: unknown;
  inputs_error: string | null;
  items?: ItemRecord[]; // a fan-out node's
}

export interface EventEntry {
  attributes: Record<string, unknown>;
  data: unknown;
  runs: string[];
}

export interface DeadLetter {
  attributes: Record<string, unknown>;
  run: string | null;
  node: string | null;
  function: string | null;
  code: number | null;
  reason: string;
  error: ErrorDoc | null;
}

export interface EventsPage {
  kept: boolean;
  since: string | null;
  events: EventEntry[];
  dead_letters: DeadLetter[];
  truncated: boolean;
}
