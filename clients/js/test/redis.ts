// A Redis of a test's own, from the installed `redis-server` on a free port,
// for a server whose bus it is: the test can drop the server's subscriber
// connection, after which the server catches its sockets up from the store.
import { spawn, type ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
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
      if (await redis.command("PING").then((reply) => reply.startsWith("+PONG"), () => false)) return redis;
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
    if (!reply.startsWith(":")) throw new Error(`CLIENT KILL answered ${reply}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((done) => this.child.once("exit", done));
    this.child.kill("SIGKILL");
    await exited;
  }

  /** One command on a connection of its own; the first line of the reply. */
  command(...words: string[]): Promise<string> {
    const request = `*${words.length}\r\n${words.map((word) => `$${Buffer.byteLength(word)}\r\n${word}\r\n`).join("")}`;
    return new Promise((done, fail) => {
      const socket = connect(this.port, "127.0.0.1");
      let reply = "";
      socket.on("data", (chunk) => {
        reply += chunk.toString();
        if (reply.includes("\r\n")) {
          socket.destroy();
          done(reply.slice(0, reply.indexOf("\r\n")));
        }
      });
      socket.on("error", fail);
      socket.write(request);
    });
  }
}
