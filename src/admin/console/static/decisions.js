// Live mode of the decisions page: an EventSource on /console/decisions/live with the page's
// filters; each new record (rendered by the server) is put on top of the table.
'use strict';
(function () {
  const toggle = document.getElementById('live-toggle');
  const status = document.getElementById('live-status');
  const body = document.querySelector('main table tbody');
  if (!toggle || !body) return;
  let source = null;
  const stop = () => {
    if (source) source.close();
    source = null;
    toggle.setAttribute('aria-pressed', 'false');
    toggle.textContent = 'Live mode: off';
    status.textContent = '';
  };
  toggle.addEventListener('click', () => {
    if (source) return stop();
    source = new EventSource(toggle.dataset.live);
    toggle.setAttribute('aria-pressed', 'true');
    toggle.textContent = 'Live mode: on';
    status.textContent = 'Waiting for new decisions…';
    let count = 0;
    source.addEventListener('decision', (event) => {
      const { html } = JSON.parse(event.data);
      const holder = document.createElement('tbody');
      holder.innerHTML = html;
      const row = holder.firstElementChild;
      row.classList.add('fresh');
      const empty = body.querySelector('td[colspan]');
      if (empty) empty.parentElement.remove();
      body.insertBefore(row, body.firstElementChild);
      count += 1;
      status.textContent = `${count} new decision${count === 1 ? '' : 's'}`;
    });
    source.addEventListener('problem', (event) => (status.textContent = JSON.parse(event.data)));
    source.onerror = () => (status.textContent = 'Disconnected; retrying…');
  });
})();
