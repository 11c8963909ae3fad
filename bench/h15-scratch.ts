import { chainHash, prepareDecision } from '../src/audit/decision-chain';
import { decisionForScratch } from './h15-scratch-record';
const records = Array.from({ length: 500 }, (_, i) => decisionForScratch(i));
for (let round = 0; round < 8; round++) {
  let t = performance.now();
  const prepared = records.map((r) => prepareDecision(r));
  const prep = performance.now() - t;
  t = performance.now();
  let prev = '0'.repeat(64);
  const json: string[] = [];
  prepared.forEach((p, i) => { const h = chainHash(prev, i, p.content); json.push(`${p.content.slice(0, -1)},"seq":${i},"prev_hash":"${prev}","hash":"${h}"}`); prev = h; });
  const joined = `[${json.join(',')}]`;
  const hash = performance.now() - t;
  console.log(`prepare 500: ${prep.toFixed(2)} ms; hash+json 500: ${hash.toFixed(2)} ms (${joined.length} chars)`);
}
