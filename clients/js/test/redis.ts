// A Redis of a test's own, from the installed `redis-server` on a free port,
// for a server whose bus it is: the test can drop the server's subscriber
// connection, after which the server catches its sockets up from the store.
// Commands go through the installed `redis-cli`.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { freePort } from "./server.js";

export class TestRedis {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(): Promise<TestRedis> {
    const port = await freePort();
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    const redis = new TestRedis(spawn("redis-server", args, { stdio: "ignore" }), port);
    for (let i = 0; i < 100; i++) {
      if (await redis.command("PING").then((reply) => reply === "PONG", () => false)) return redis;
      await sleep(50);
    }
    await redis.stop();
    throw new Error(`redis-server did not answer on port ${port}`);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/`;
  }

  /** Closes every pub/sub connection (the server's bus subscriber among them). */
  async dropSubscribers(): Promise<void> {
    const reply = await this.command("CLIENT", "KILL", "TYPE", "pubsub");
    if (!/^\d+$/.test(reply)) throw new Error(`CLIENT KILL answered ${reply}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((done) => this.child.once("exit", done));
    this.child.kill("SIGKILL");
    await exited;
  }

  /** One command through `redis-cli`; its reply as printed to a pipe (`PONG`, `1`). */
  async command(...words: string[]): Promise<string> {
    const { stdout } = await promisify(execFile)("redis-cli", ["-p", String(this.port), ...words]);
    return stdout.trim();
  }
}
