// A WebSocket that reconnects on its own, with an explicit state for the status indicator.
//
// States: idle → connecting → open → (reconnecting → connecting → open)* → closed | failed.
// Policies, each with its reason:
// - retry: wire.js's `backoffDelay` (full jitter, the constants Python's client uses), so clients
//   of a restarted server don't return at once;
// - whether to retry is wire.js's `decide(close code, error type)`, the table Python's
//   protocol/retry.py holds too: a protocol error (1008…) is not retried, a server fault, a full
//   server or a session's time limit is;
// - give up after `giveUpAfterMs` without an open connection, so a dead server ends in "failed";
// - retry at once when the browser says it is back online: the backoff was waiting for that.

import { BACKOFF, backoffDelay, decide, errorType } from "./wire.js";

export { backoffDelay };

export const State = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
  FAILED: "failed",
});

export class Connection extends EventTarget {
  /**
   * @param {() => Promise<string>} url  called before every attempt (a fresh single-use token each time)
   * @param {object} options  name (for logs), initialMs, maxMs, giveUpAfterMs
   */
  constructor(url, { name = "connection", initialMs = BACKOFF.initialMs, maxMs = BACKOFF.maxMs, giveUpAfterMs = 300000 } = {}) {
    super();
    this.url = url;
    this.name = name;
    this.backoff = { initialMs, maxMs };
    this.giveUpAfterMs = giveUpAfterMs;
    this.state = State.IDLE;
    this.attempt = 0;
    this.retryAt = 0;
    this.lastError = null;
    this.lastErrorType = null;
    this.opens = 0;
    this.ws = null;
    this._timer = null;
    this._failingSince = 0;
    this._onOnline = () => {
      if (this.state === State.RECONNECTING) this._connectNow();
    };
  }

  /** Start connecting; resolves when the first connection is open. */
  open() {
    if (this.state !== State.IDLE && this.state !== State.CLOSED && this.state !== State.FAILED) {
      return Promise.resolve();
    }
    window.addEventListener("online", this._onOnline);
    this.attempt = 0;
    this._failingSince = performance.now();
    const opened = new Promise((resolve, reject) => {
      const onState = (event) => {
        if (event.detail.state === State.OPEN) {
          this.removeEventListener("state", onState);
          resolve();
        } else if (event.detail.state === State.FAILED || event.detail.state === State.CLOSED) {
          this.removeEventListener("state", onState);
          reject(new Error(this.lastError || `${this.name} ${event.detail.state}`));
        }
      };
      this.addEventListener("state", onState);
    });
    this._connectNow();
    return opened;
  }

  /** Send a message (objects as JSON). False when not open: the caller decides what to keep. */
  send(message) {
    if (this.state !== State.OPEN || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(typeof message === "string" ? message : JSON.stringify(message));
    return true;
  }

  get bufferedAmount() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  /** Close for good (no reconnect). */
  close(code = 1000, reason = "") {
    window.removeEventListener("online", this._onOnline);
    clearTimeout(this._timer);
    const ws = this.ws;
    this.ws = null;
    this._setState(State.CLOSED);
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
  }

  _setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(
      new CustomEvent("state", { detail: { state, attempt: this.attempt, retryAt: this.retryAt, ...extra } }),
    );
  }

  async _connectNow() {
    clearTimeout(this._timer);
    this._setState(State.CONNECTING);
    let url;
    try {
      url = await this.url();
    } catch (err) {
      this.lastError = `could not get a URL: ${err.message}`;
      this._scheduleRetry();
      return;
    }
    if (this.state !== State.CONNECTING) return; // closed meanwhile
    const ws = new WebSocket(url);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.lastErrorType = null;
      this.opens += 1;
      this.attempt = 0;
      this.lastError = null;
      this._setState(State.OPEN);
      this.dispatchEvent(new CustomEvent("open", { detail: { reconnect: this.opens > 1 } }));
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      const error = errorType(data);
      if (error) this.lastErrorType = error;
      this.dispatchEvent(new CustomEvent("message", { detail: data }));
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.dispatchEvent(new CustomEvent("close", { detail: { code: event.code, reason: event.reason, opened } }));
      if (this.state === State.CLOSED) return;
      this.lastError = event.reason || `closed with ${event.code}`;
      if (decide(event.code, this.lastErrorType) === "fail") {
        window.removeEventListener("online", this._onOnline);
        this._setState(State.FAILED, { code: event.code, reason: event.reason });
        return;
      }
      if (opened) this._failingSince = performance.now();
      this._scheduleRetry();
    };
  }

  _scheduleRetry() {
    if (performance.now() - this._failingSince > this.giveUpAfterMs) {
      window.removeEventListener("online", this._onOnline);
      this._setState(State.FAILED, { reason: this.lastError });
      return;
    }
    const delay = backoffDelay(this.attempt, this.backoff);
    this.attempt += 1;
    this.retryAt = performance.now() + delay;
    this._setState(State.RECONNECTING, { delay });
    this._timer = setTimeout(() => this._connectNow(), delay);
  }
}

/** A URL builder that asks `baseUrl` for a fresh single-use token before every attempt. */
export function tokenUrl(baseUrl, path, params, tokenType, { tokenParam = "token", fetchToken = mintToken } = {}) {
  return async () => {
    const query = new URLSearchParams(params);
    const token = await fetchToken(baseUrl, tokenType);
    if (token) query.set(tokenParam, token);
    const ws = new URL(path, baseUrl);
    ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
    ws.search = query.toString();
    return ws.toString();
  };
}

/** `POST /v1/single-use-token/{type}` on the page's own server (which holds any key). */
export async function mintToken(baseUrl, tokenType) {
  const response = await fetch(new URL(`/v1/single-use-token/${tokenType}`, baseUrl), {
    method: "POST",
    cache: "no-store",
  });
  if (!response.ok) throw new Error(`token request failed: HTTP ${response.status}`);
  return (await response.json()).token;
}
