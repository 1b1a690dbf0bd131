// A copyable curl command for a pipeline's webhook, signed as its trigger's `auth` says (router/webhook_auth.py):
// Standard Webhooks (HMAC-SHA256 of `id.timestamp.body` under the base64 key after `whsec_`), GitHub
// (`X-Hub-Signature-256: sha256=HEX`), a bearer secret, or, without auth, a token of scope `run`.

import type { Trigger } from "./types";

export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export function curlExample(origin: string, pipeline: string, trigger: Trigger, body: string): string {
  const url = `${origin.replace(/\/$/, "")}${trigger.path ?? `/hooks/${pipeline}`}`;
  const lines = [`BODY=${shellQuote(body)}`];
  const curl = [`curl -sS -X POST ${shellQuote(url)}`, `-H 'content-type: application/json'`];
  const env = trigger.auth?.secret_env ?? "";
  switch (trigger.auth?.scheme) {
    case "standard-webhooks":
      lines.push(
        `SECRET="$${env}"  # whsec_... as the router's ${env} holds it`,
        `ID="msg_$(date +%s%N)"; TS="$(date +%s)"`,
        `KEY="$(printf '%s' "\${SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \\n')"`,
        `SIG="$(printf '%s' "$ID.$TS.$BODY" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY" -binary | base64)"`,
      );
      curl.push(`-H "webhook-id: $ID"`, `-H "webhook-timestamp: $TS"`, `-H "webhook-signature: v1,$SIG"`);
      break;
    case "github":
      lines.push(
        `SECRET="$${env}"  # as the router's ${env} holds it`,
        `SIG="$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')"`,
      );
      curl.push(`-H "X-Hub-Signature-256: sha256=$SIG"`);
      break;
    case "bearer":
      lines.push(`SECRET="$${env}"  # as the router's ${env} holds it`);
      curl.push(`-H "Authorization: Bearer $SECRET"`);
      break;
    default:
      lines.push(`# KNFLOW_TOKEN: a token of scope run (knflow token create --name NAME --scope run)`);
      curl.push(`-H "Authorization: Bearer $KNFLOW_TOKEN"`);
  }
  curl.push(`--data-binary "$BODY"`);
  return [...lines, curl.join(" \\\n  ")].join("\n");
}
