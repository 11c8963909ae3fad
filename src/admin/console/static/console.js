// Every console page: copy buttons copy the text of the element they name.
'use strict';
document.addEventListener('click', (event) => {
  const button = event.target.closest && event.target.closest('button[data-copy]');
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const done = (label) => {
    const original = button.dataset.label || button.textContent;
    button.dataset.label = original;
    button.textContent = label;
    setTimeout(() => (button.textContent = original), 1500);
  };
  navigator.clipboard.writeText(source.textContent).then(
    () => done('Copied'),
    () => done('Copy failed: select the text'),
  );
});
