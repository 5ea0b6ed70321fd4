// Follow a statestore namespace's change log and print one JSON line per event (docs/events.md).
//
//   node consumer.mjs [<redis-url> [<namespace> [<since>]]]
//
// <since> is where to start: a revision saved from an earlier run (the "revision" of the last line it
// printed), "0-0" for the very beginning of the log, or nothing for "from now" (the newest entry).
// Progress goes to stderr. Exit status: 0 after SIGINT/SIGTERM, 3 when the consumer must relist
// (its position was trimmed from the log, or the log went backwards), 1 on any other error.
import { createClient, ErrorReply } from 'redis';

const [url = 'redis://127.0.0.1:6379/0', namespace = 'default', since] = process.argv.slice(2);
const LOG = `ss:{${namespace}}:log`;
const BLOCK_MS = 5000; // XREAD BLOCK: how long one read waits for a commit
const COUNT = 100; // entries per read at most
const EXIT_RELIST = 3;

class RelistNeeded extends Error {}

const backoff = (attempt) => Math.min(1000, 10 * 2 ** Math.min(attempt, 7)) * (0.5 + Math.random() / 2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const note = (text) => process.stderr.write(`consumer: ${text}\n`);

const client = createClient({
  url,
  RESP: 2, // replies as plain arrays, the shapes redis-cli prints
  name: 'statestore-node-consumer', // CLIENT SETNAME, sent again on every reconnect
  socket: {
    // Longer than one blocking read, so an XREAD that is simply waiting never times out, but a server
    // that stopped answering (paused, partitioned) is noticed and the connection replaced.
    socketTimeout: BLOCK_MS + 5000,
    // Reconnect after any loss, a socket timeout included (node-redis's default gives up on one).
    reconnectStrategy: (retries) => backoff(retries),
  },
});
client.on('error', (err) => note(`redis: ${err.message}`)); // without a listener, an error ends the process

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopping = true;
    client.destroy(); // fails the pending XREAD at once
  });
}

// Stream entries come as [id, [field, value, field, value, ...]].
function fieldsOf(flat) {
  const fields = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
  return fields;
}

const seqOf = (fields) => (fields.seq === undefined ? null : Number(fields.seq)); // no seq: written before there were any

// Revisions are <ms>-<n>: compare them as two integers, never as strings.
function compareIds(a, b) {
  const [am, an] = a.split('-').map(BigInt);
  const [bm, bn] = b.split('-').map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  return an === bn ? 0 : an < bn ? -1 : 1;
}

// Run one command; on a lost connection (or Redis still loading after a restart) wait and send it again.
// Every command here names its position explicitly, so sending it again can never skip anything.
async function retrying(what, args) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await client.sendCommand(args);
    } catch (err) {
      if (stopping) return null;
      // an error reply is final, except from a server that is loading its data or has just become a replica
      if (err instanceof ErrorReply && !/^(LOADING|READONLY|MASTERDOWN|TRYAGAIN)\b/.test(err.message)) throw err;
      note(`${what} failed (${err.message}); sending it again`);
      await sleep(backoff(attempt));
    }
  }
}

// The position to follow from: the revision and the seq of the last entry already processed.
async function startingPosition() {
  if (since === '0-0') return { id: '0-0', seq: 0 };
  if (since === undefined) {
    const newest = await retrying('XREVRANGE', ['XREVRANGE', LOG, '+', '-', 'COUNT', '1']);
    return newest?.length ? { id: newest[0][0], seq: seqOf(fieldsOf(newest[0][1])) } : { id: '0-0', seq: 0 };
  }
  if (!/^\d+-\d+$/.test(since)) throw new Error(`not a revision: ${since}`);
  // A saved revision alone is enough: its entry holds its seq.
  const entry = await retrying('XRANGE', ['XRANGE', LOG, since, since]);
  if (entry?.length) return { id: since, seq: seqOf(fieldsOf(entry[0][1])) };
  const oldest = await retrying('XRANGE', ['XRANGE', LOG, '-', '+', 'COUNT', '1']);
  if (oldest?.length && compareIds(since, oldest[0][0]) < 0) {
    throw new RelistNeeded(`revision ${since} was trimmed from the log (its oldest entry is ${oldest[0][0]})`);
  }
  throw new RelistNeeded(`revision ${since} is not in the log: the log lost entries or was replaced`);
}

// Check one entry against the position, print it, and return the new position.
function accept(pos, id, fields) {
  const seq = seqOf(fields);
  if (seq !== null && pos.seq !== null) {
    if (seq > pos.seq + 1) {
      throw new RelistNeeded(`${seq - pos.seq - 1} event(s) after ${pos.id} were trimmed before they were read`);
    }
    if (seq <= pos.seq) throw new RelistNeeded(`the log went backwards: seq ${seq} at ${id} after seq ${pos.seq}`);
  }
  if (compareIds(id, pos.id) <= 0) throw new RelistNeeded(`the log went backwards: ${id} after ${pos.id}`);
  const { type, kind, id: recordId, name, container, status } = fields;
  const event = { seq, revision: id, type, kind, id: recordId, name, container, version: Number(fields.version), status };
  process.stdout.write(`${JSON.stringify(event)}\n`);
  return { id, seq };
}

async function main() {
  await client.connect();
  let pos = await startingPosition();
  note(`following ${LOG} after ${pos.id} (seq ${pos.seq})`);
  while (!stopping) {
    // Always from the last entry processed, never '$' ("whatever is newest now" skips what came meanwhile).
    const reply = await retrying('XREAD', ['XREAD', 'COUNT', String(COUNT), 'BLOCK', String(BLOCK_MS),
      'STREAMS', LOG, pos.id]);
    if (!reply) continue; // nothing committed within BLOCK_MS (or stopping)
    for (const [id, flat] of reply[0][1]) pos = accept(pos, id, fieldsOf(flat));
  }
}

main().then(
  () => {
    client.destroy();
  },
  (err) => {
    if (stopping) return;
    note(err instanceof RelistNeeded ? `relist needed: ${err.message}` : `error: ${err.message}`);
    process.exitCode = err instanceof RelistNeeded ? EXIT_RELIST : 1;
    client.destroy();
  },
);
