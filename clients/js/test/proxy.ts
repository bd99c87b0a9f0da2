// A TCP proxy for faults: its open connections can be frozen (bytes stop
// flowing both ways but nothing is closed, as when a network path dies
// silently; new connections after a freeze go through), or cut (every
// connection closed, and new ones closed at once until it is restored, as
// when a database goes away and comes back).
import { createServer, connect, type Server, type Socket } from "node:net";

export class FaultProxy {
  connections = 0;
  #live: { client: Socket; upstream: Socket }[] = [];
  readonly #all: Socket[] = [];
  #refusing = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static start(upstreamPort: number, upstreamHost = "127.0.0.1"): Promise<FaultProxy> {
    return new Promise((done) => {
      let proxy: FaultProxy;
      const server = createServer((client) => {
        if (proxy.#refusing) {
          client.destroy();
          return;
        }
        proxy.connections++;
        const upstream = connect(upstreamPort, upstreamHost);
        client.pipe(upstream);
        upstream.pipe(client);
        const end = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on("error", end);
        upstream.on("error", end);
        proxy.#live.push({ client, upstream });
        proxy.#all.push(client, upstream);
      });
      server.listen(0, "127.0.0.1", () => {
        proxy = new FaultProxy(server, (server.address() as { port: number }).port);
        done(proxy);
      });
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Every open connection stops passing bytes, without a close. */
  freeze(): void {
    for (const { client, upstream } of this.#live) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
    this.#live = [];
  }

  /** Every connection is closed, and new ones are closed at once, until restored. */
  cut(): void {
    this.#refusing = true;
    for (const socket of this.#all) socket.destroy();
    this.#live = [];
  }

  restore(): void {
    this.#refusing = false;
  }

  close(): void {
    for (const socket of this.#all) socket.destroy();
    this.server.close();
  }
}
