// Opens an issue for a failing nightly build of the template, or comments on
// the one already open, naming the variant that failed and linking the run.
module.exports = async ({ github, context, variant }) => {
  const label = 'nightly-failure';
  const run = `${context.serverUrl}/${context.repo.owner}/${context.repo.repo}/actions/runs/${context.runId}`;
  const body = `The nightly build against the newest compatible crates failed for **${variant}**.\n\nRun: ${run}`;
  const { data: open } = await github.rest.issues.listForRepo({
    owner: context.repo.owner,
    repo: context.repo.repo,
    state: 'open',
    labels: label,
  });
  if (open.length > 0) {
    await github.rest.issues.createComment({
      owner: context.repo.owner,
      repo: context.repo.repo,
      issue_number: open[0].number,
      body,
    });
  } else {
    await github.rest.issues.create({
      owner: context.repo.owner,
      repo: context.repo.repo,
      title: 'Nightly build of the template fails on the newest crates',
      body,
      labels: [label],
    });
  }
};
