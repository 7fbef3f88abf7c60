import t from 'tap';
import { compileGlobs, hostGlobProblem } from '../../src/route/glob.js';

t.test('globs', async (t) => {
  const table: [string | string[], boolean, string, boolean][] = [
    ['*.example.com', true, 'www.example.com', true],
    ['*.example.com', true, 'a.b.example.com', true],
    ['*.example.com', true, 'example.com', false],
    ['*.example.com', true, 'WWW.Example.COM', true],
    ['*.example.com', false, 'WWW.Example.COM', false],
    ['h?', false, 'h2', true],
    ['h?', false, 'h2c', false],
    ['a.b', false, 'axb', false], // dots are literal
    ['a+b(c)', false, 'a+b(c)', true], // regex specials are literal
    [['GET', 'P*'], false, 'PUT', true],
    [['GET', 'P*'], false, 'DELETE', false],
    ['*', false, '', true],
  ];
  for (const [globs, ci, input, want] of table) t.equal(compileGlobs(globs, ci).test(input), want, `${String(globs)} ~ ${input}`);
});

t.test('host globs', async (t) => {
  t.equal(hostGlobProblem('*.example.com', false), null);
  t.match(hostGlobProblem('a b', false), /invalid host name pattern/);
  t.match(hostGlobProblem('example.com:8080', false), /invalid host name pattern/);
  t.equal(hostGlobProblem('example.com:8080', true), null);
  t.match(hostGlobProblem('', true), /must not be empty/);
});
