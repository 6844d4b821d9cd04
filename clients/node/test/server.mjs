// Starts real switchboard servers for the end-to-end tests. The binary is $SWITCHBOARD_BIN
// (the Makefile's node-test target builds bin/switchboard and passes it) or, without it, is
// built once per test file with `go build ./cmd/switchboard` from the repository root.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

export const repoRoot = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

let built;
export function serverBinary() {
  if (process.env.SWITCHBOARD_BIN) {
    const bin = resolve(repoRoot, process.env.SWITCHBOARD_BIN);
    if (!existsSync(bin)) throw new Error(`SWITCHBOARD_BIN=${bin} does not exist`);
    return bin;
  }
  if (!built) {
    built = join(mkdtempSync(join(tmpdir(), "switchboard-node-test-")), "switchboard");
    execFileSync("go", ["build", "-o", built, "./cmd/switchboard"], { cwd: repoRoot, stdio: "inherit" });
  }
  return built;
}

/**
 * Starts `switchboard serve --listen 127.0.0.1:PORT --admin off --log-format json ARGS` and
 * resolves once its JSON log says "switchboard listening", with the address from the
 * log line's "addr" field.
 */
export function startServer({ port = 0, args = [] } = {}) {
  const bin = serverBinary();
  const proc = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--admin", "off", "--log-format", "json", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const lines = [];
  const exited = new Promise((r) => proc.once("exit", (code, signal) => r({ code, signal })));
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`switchboard did not log "switchboard listening" within 15 s:\n${lines.join("\n")}`));
    }, 15000);
    createInterface({ input: proc.stderr }).on("line", (line) => {
      lines.push(line);
      let rec;
      try {
        rec = JSON.parse(line);
      } catch {
        return;
      }
      if (rec.msg === "switchboard listening") {
        clearTimeout(timer);
        resolveStart({
          addr: rec.addr,
          port: Number(rec.addr.slice(rec.addr.lastIndexOf(":") + 1)),
          proc,
          lines,
          exited,
          /** Stops the server (SIGKILL by default: an abrupt crash) and waits for its exit. */
          async stop(signal = "SIGKILL") {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
            return exited;
          },
        });
      }
    });
    proc.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`switchboard exited (${code ?? signal}) before listening:\n${lines.join("\n")}`));
    });
  });
}
