// The real server binary for the client's tests: started in a fresh
// directory with a fresh database (PostgreSQL when TEST_PG_URL is set, as the
// test command sets it; the embedded store otherwise), killed and restarted
// on the same port and database when a test asks.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const BINARY = process.env.CHAT_SERVER_BIN ?? resolve(import.meta.dirname, "../../../../target/debug/chat-server");

export class TestServer {
  #child: ChildProcess | null = null;
  #log = "";

  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly env: Record<string, string>,
  ) {}

  static async start(env: Record<string, string> = {}): Promise<TestServer> {
    const dir = mkdtempSync(join(tmpdir(), "chat-client-test-"));
    const port = await freePort();
    const database: Record<string, string> = process.env.TEST_PG_URL
      ? { DATABASE_URL: `${process.env.TEST_PG_URL.replace(/\/+$/, "")}/chat_test_js_${process.pid}_${port}` }
      : {};
    const server = new TestServer(port, dir, {
      SECRET_KEY: "client-tests-secret-0123456789abcdef",
      RATE_LIMIT_SENDS_PER_SEC: "0",
      RATE_LIMIT_AUTH_PER_MIN: "0",
      RATE_LIMIT_SEARCH_PER_MIN: "0",
      RATE_LIMIT_NEW_CHATS_PER_MIN: "0",
      ...database,
      ...env,
    });
    await server.restart();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the binary (again) and waits until it answers. */
  async restart(): Promise<void> {
    const child = spawn(BINARY, [], {
      cwd: this.dir,
      env: { PATH: process.env.PATH ?? "", BIND: `127.0.0.1:${this.port}`, RUST_LOG: "warn", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    const keep = (chunk: Buffer) => (this.#log = (this.#log + chunk.toString()).slice(-20_000));
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}):\n${this.#log}`);
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`the server did not start:\n${this.#log}`);
  }

  /** kill -9: no goodbye to anyone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  get log(): string {
    return this.#log;
  }
}

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => done(port));
    });
  });
}
