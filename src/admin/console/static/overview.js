// The overview's charts: allowed, denied and failed decisions per hour and per day (uPlot,
// served from the npm package), with a vertical line where each policy revision first decided.
/* global uPlot -- the IIFE build at /console/vendor/uplot.js, which the overview page loads before this script */
'use strict';
(function () {
  const block = document.getElementById('chart-data');
  if (!block || typeof uPlot === 'undefined') return;
  const data = JSON.parse(block.textContent);
  const series = [
    { label: 'allowed', stroke: '#1b7f3b', fill: 'rgba(27,127,59,0.12)' },
    { label: 'denied', stroke: '#b3261e', fill: 'rgba(179,38,30,0.10)' },
    { label: 'failed', stroke: '#8a5a00', fill: 'rgba(138,90,0,0.10)' },
  ];
  const reloadMarks = {
    hooks: {
      draw: [
        (u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = '#3949ab';
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1;
          for (const reload of data.reloads) {
            if (reload.at < u.scales.x.min || reload.at > u.scales.x.max) continue;
            const x = Math.round(u.valToPos(reload.at, 'x', true));
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        },
      ],
    },
  };
  for (const box of document.querySelectorAll('[data-chart]')) {
    const rows = data[box.dataset.chart];
    const columns = [rows.map((r) => r.at), rows.map((r) => r.allowed), rows.map((r) => r.denied), rows.map((r) => r.failed)];
    const width = Math.max(320, box.clientWidth || 800);
    const chart = new uPlot(
      {
        width,
        height: 240,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
        series: [{}, ...series],
        axes: [{}, { size: 60 }],
        plugins: [reloadMarks],
      },
      columns,
      box,
    );
    box.dataset.points = String(rows.length);
    box.dataset.total = String(
      columns
        .slice(1)
        .flat()
        .reduce((a, b) => a + b, 0),
    );
    window.addEventListener('resize', () => chart.setSize({ width: Math.max(320, box.clientWidth), height: 240 }));
  }
})();
