// A TCP proxy whose open connections can be frozen: bytes stop flowing both
// ways but nothing is closed, as when a network path dies silently. New
// connections after a freeze go through.
import { createServer, connect, type Server, type Socket } from "node:net";

export class FreezingProxy {
  connections = 0;
  #live: { client: Socket; upstream: Socket }[] = [];
  readonly #all: Socket[] = [];

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static start(upstreamPort: number): Promise<FreezingProxy> {
    return new Promise((done) => {
      let proxy: FreezingProxy;
      const server = createServer((client) => {
        proxy.connections++;
        const upstream = connect(upstreamPort, "127.0.0.1");
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
        proxy = new FreezingProxy(server, (server.address() as { port: number }).port);
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

  close(): void {
    for (const socket of this.#all) socket.destroy();
    this.server.close();
  }
}
