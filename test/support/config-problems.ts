import { ConfigError, loadConfig } from '../../src/config';

/** What loading these flags (no environment) says is wrong with them: none when they load. */
export function configProblems(argv: readonly string[]): readonly string[] {
  try {
    loadConfig({ argv: [...argv], env: {} });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}
