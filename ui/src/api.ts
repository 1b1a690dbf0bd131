// The router's API as the dashboard calls it: every request sends the token as `Authorization: Bearer`, and
// every answer that is not 2xx becomes an ApiError carrying the router's own message (`{"error": ...}`).

import { readEvents, type SseEvent } from "./sse";

export class ApiError extends Error {
  readonly status: number;
  readonly body: unknown;
  constructor(status: number, message: string, body: unknown) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function queryString(query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

export class Api {
  readonly base: string;
  token: string | null;
  private readonly fetchFn: typeof fetch;
  onUnauthorized: ((error: ApiError) => void) | null = null;

  constructor(base: string, token: string | null, fetchFn: typeof fetch = (...args) => fetch(...args)) {
    this.base = base.replace(/\/$/, "");
    this.token = token;
    this.fetchFn = fetchFn;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.token ? { ...extra, authorization: `Bearer ${this.token}` } : { ...extra };
  }

  async request<T>(method: string, path: string, body?: unknown, query?: Query, signal?: AbortSignal): Promise<T> {
    const init: RequestInit = { method, headers: this.headers(body === undefined ? {} : { "content-type": "application/json" }), signal };
    if (body !== undefined) init.body = JSON.stringify(body);
    let response: Response;
    try {
      response = await this.fetchFn(this.base + path + queryString(query), init);
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      throw new ApiError(0, `cannot reach the router: ${(err as Error).message}`, null);
    }
    return this.answer<T>(method, path, response);
  }

  private async answer<T>(method: string, path: string, response: Response): Promise<T> {
    const text = await response.text();
    let parsed: unknown = text;
    if ((response.headers.get("content-type") ?? "").includes("json") && text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!response.ok) throw this.error(method, path, response.status, parsed);
    return parsed as T;
  }

  private error(method: string, path: string, status: number, body: unknown): ApiError {
    const said = typeof body === "object" && body !== null && "error" in body ? String((body as { error: unknown }).error) : "";
    const problems =
      typeof body === "object" && body !== null && Array.isArray((body as { problems?: unknown }).problems)
        ? (body as { problems: string[] }).problems
        : [];
    const message = [said || (typeof body === "string" && body ? body.slice(0, 300) : `HTTP ${status}`), ...problems].join("; ");
    const error = new ApiError(status, `${method} ${path}: ${message}`, body);
    if (status === 401 && this.onUnauthorized) this.onUnauthorized(error);
    return error;
  }

  /** A text body (a pipeline's YAML): PUT /pipelines/{name}, POST /pipelines/validate. */
  async text<T>(method: string, path: string, body: string, signal?: AbortSignal, contentType = "application/yaml"): Promise<T> {
    let response: Response;
    try {
      response = await this.fetchFn(this.base + path, { method, headers: this.headers({ "content-type": contentType }), body, signal });
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      throw new ApiError(0, `cannot reach the router: ${(err as Error).message}`, null);
    }
    return this.answer<T>(method, path, response);
  }

  get<T>(path: string, query?: Query, signal?: AbortSignal): Promise<T> {
    return this.request<T>("GET", path, undefined, query, signal);
  }

  post<T>(path: string, body: unknown = {}, query?: Query): Promise<T> {
    return this.request<T>("POST", path, body, query);
  }

  /** Open an event stream and read it until it ends or `signal` aborts. Resolves with the server's retry
   * delay (ms, when it sent one); rejects with ApiError when the stream cannot be opened. */
  async stream(path: string, query: Query, onEvent: (event: SseEvent) => void, signal: AbortSignal): Promise<number | null> {
    const response = await this.fetchFn(this.base + path + queryString(query), {
      headers: this.headers({ accept: "text/event-stream" }),
      signal,
      cache: "no-store",
    });
    if (!response.ok || !response.body) {
      await this.answer("GET", path, response.ok ? new Response("no body", { status: 502 }) : response);
    }
    const parser = await readEvents(response.body as ReadableStream<Uint8Array>, onEvent, signal);
    return parser.retryMs;
  }
}
