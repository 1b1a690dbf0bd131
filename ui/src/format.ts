// Times, durations, sizes and blob references as the dashboard writes them.

export function ms(from: string | null | undefined, to: string | null | undefined): number | null {
  if (!from || !to) return null;
  const d = Date.parse(to) - Date.parse(from);
  return Number.isFinite(d) ? d : null;
}

export function duration(msValue: number | null | undefined): string {
  if (msValue === null || msValue === undefined || !Number.isFinite(msValue)) return "–";
  if (msValue < 1) return `${msValue.toFixed(2)} ms`;
  if (msValue < 1000) return `${Math.round(msValue)} ms`;
  if (msValue < 60_000) return `${(msValue / 1000).toFixed(msValue < 10_000 ? 2 : 1)} s`;
  const minutes = Math.floor(msValue / 60_000);
  if (minutes < 60) return `${minutes} min ${Math.round((msValue % 60_000) / 1000)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function ago(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return "–";
  const s = Math.round((now - Date.parse(iso)) / 1000);
  if (!Number.isFinite(s)) return iso;
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function clock(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().replace("T", " ").replace("Z", "").slice(0, 23);
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export interface BlobRef {
  $blob: string;
  size_bytes: number;
  sha256: string;
  media_type?: string;
}

export function isBlobRef(value: unknown): value is BlobRef {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  const keys = Object.keys(v);
  return (
    typeof v.$blob === "string" &&
    typeof v.sha256 === "string" &&
    typeof v.size_bytes === "number" &&
    keys.every((k) => ["$blob", "size_bytes", "sha256", "media_type"].includes(k))
  );
}

/** Where the error's traceback is, if it has one (knflow's functions send it as `detail.traceback`). */
export function traceback(detail: unknown): string | null {
  if (typeof detail === "object" && detail !== null && typeof (detail as { traceback?: unknown }).traceback === "string") {
    return (detail as { traceback: string }).traceback;
  }
  return null;
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) ?? "null";
}
