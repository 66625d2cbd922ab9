/**
 * How the walkthrough prints: a heading per step, a line per check (a check
 * mark or a cross, what was seen, the number that proves it), and a summary
 * table. Plain text without colour when asked or when not on a terminal, so
 * the output reads the same in a log or a CI job.
 */
const STYLES = { green: 32, red: 31, bold: 1, dim: 2 } as const;
type Style = keyof typeof STYLES;

export class Report {
  private readonly steps: { title: string; passed: number; failed: number; headline: string }[] = [];
  private failures = 0;

  private muted = false;

  constructor(
    private readonly out: (text: string) => void,
    private readonly color: boolean,
  ) {}

  private write(text: string): void {
    if (!this.muted) this.out(text);
  }

  /** Nothing more is printed (interrupted: what the walkthrough sees of its processes going is not a finding). */
  mute(): void {
    this.muted = true;
  }

  private paint(style: Style, text: string): string {
    return this.color ? `\u001b[${STYLES[style]}m${text}\u001b[0m` : text;
  }

  title(text: string): void {
    this.write(`${this.paint('bold', text)}\n`);
  }

  /** A line of context (where things run, what comes next): not a check. */
  note(text: string): void {
    this.write(`    ${this.paint('dim', text)}\n`);
  }

  /** A new step: `title` under its number, `short` in the summary table. */
  step(title: string, short: string): void {
    this.steps.push({ title: short, passed: 0, failed: 0, headline: '' });
    this.write(`\n${this.paint('bold', `${this.steps.length}. ${title}`)}\n`);
  }

  /** One check of the current step; `measured` is the number that proves it. */
  check(ok: boolean, what: string, measured = ''): boolean {
    const current = this.steps.at(-1);
    if (!ok) this.failures += 1;
    if (current !== undefined) {
      if (ok) current.passed += 1;
      else current.failed += 1;
    }
    const mark = ok ? this.paint('green', '✓') : this.paint('red', '✗');
    this.write(`  ${mark} ${what}${measured === '' ? '' : `  ${this.paint('dim', `[${measured}]`)}`}\n`);
    return ok;
  }

  /** What the summary says of the current step. */
  headline(text: string): void {
    const current = this.steps.at(-1);
    if (current !== undefined) current.headline = text;
  }

  /** Failed checks, in a step or before the first (setting up). */
  failed(): number {
    return this.failures;
  }

  /** The table of every step: its checks, and its headline. */
  table(): void {
    const rows = this.steps.map((step, index) => [
      `${index + 1}. ${step.title}`,
      step.failed === 0 ? `✓ ${step.passed}/${step.passed}` : `✗ ${step.passed}/${step.passed + step.failed}`,
      step.headline,
    ]);
    const header = ['step', 'checks', 'measured'];
    const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
    const line = (cells: readonly string[]): string =>
      cells
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd();
    this.write(`\n${this.paint('bold', line(header))}\n`);
    for (const [index, row] of rows.entries()) {
      const text = line(row);
      this.write(`${this.steps[index]?.failed === 0 ? text : this.paint('red', text)}\n`);
    }
  }
}
