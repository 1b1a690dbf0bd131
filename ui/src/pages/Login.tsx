import { useState } from "react";

export function Login({ onSignIn, problem }: { onSignIn: (token: string) => void; problem: string | null }) {
  const [token, setToken] = useState("");
  return (
    <div className="login">
      <form
        className="card"
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) onSignIn(token.trim());
        }}
      >
        <h1>knflow</h1>
        <p>Sign in with an API token: the admin token <code>knflow dev</code> or <code>knflow serve router</code> was given (KNFLOW_ADMIN_TOKEN), or one from <code>knflow token create --name NAME --scope read</code>.</p>
        <label className="field">
          <span>API token</span>
          <input type="password" autoFocus autoComplete="off" value={token} onChange={(e) => setToken(e.target.value)} placeholder="kf_…" data-testid="token" />
        </label>
        {problem && <div className="problem" role="alert">{problem}</div>}
        <div className="actions">
          <button className="primary" type="submit" data-testid="sign-in">Sign in</button>
        </div>
        <p className="muted small">The token stays in this tab's session storage and goes to the router in the Authorization header only.</p>
      </form>
    </div>
  );
}
