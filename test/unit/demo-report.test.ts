// Unit test (no network): how `npm run demo` prints its checks and summary.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Report } from '../../src/demo/report';

function printed(color: boolean, run: (report: Report) => void): { text: string; report: Report } {
  let text = '';
  const report = new Report((chunk) => (text += chunk), color);
  run(report);
  return { text, report };
}

test('colours marks only when asked, and the summary table aligns its columns', () => {
  const steps = (report: Report): void => {
    report.step('a long title for the first step', 'first');
    report.check(true, 'seen', '1.0 ms');
    report.headline('1.0 ms');
    report.step('the second', 'second, longer');
    report.check(false, 'not seen');
    report.table();
  };
  const plain = printed(false, steps);
  assert.doesNotMatch(plain.text, /\u001b\[/);
  assert.match(plain.text, /^1\. a long title for the first step\n {2}✓ seen {2}\[1\.0 ms\]\n/m);
  assert.match(plain.text, /^ {2}✗ not seen\n/m);
  const table = plain.text.split('\n').filter((line) => /^(step|\d\.) /.test(line) && !line.includes('title') && !line.includes('the second'));
  assert.deepEqual(table, ['step               checks  measured', '1. first           ✓ 1/1   1.0 ms', '2. second, longer  ✗ 0/1']);
  assert.equal(plain.report.failed(), 1);

  const coloured = printed(true, steps);
  assert.match(coloured.text, /\u001b\[32m✓\u001b\[0m seen/);
  assert.match(coloured.text, /\u001b\[31m✗\u001b\[0m not seen/);
});

test('counts a failure before the first step, and prints nothing once muted', () => {
  const { text, report } = printed(false, (r) => {
    r.check(false, 'setting up');
    r.mute();
    r.check(false, 'after the interruption');
  });
  assert.equal(report.failed(), 2);
  assert.equal(text, '  ✗ setting up\n');
});
