// suanli dashboard: small progressive enhancements. Every page reads fine without this file.
"use strict";

// Live logs: continue the server-rendered log from where it stopped.
function streamLogs(pre) {
  const url = pre.dataset.stream;
  const badge = document.querySelector("[data-testid=logs-live]");
  const decoder = new TextDecoder();
  const atBottom = () => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
  fetch(url, { credentials: "same-origin" }).then(async (response) => {
    if (!response.ok || !response.body) return;
    const reader = response.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (badge) badge.hidden = false; // "live" once output flows, not while the job waits
      const follow = atBottom();
      pre.append(decoder.decode(value, { stream: true }));
      if (follow) pre.scrollTop = pre.scrollHeight;
    }
  }).catch(() => {}).finally(() => {
    if (badge) badge.hidden = true;
    pre.dataset.streamEnded = "true";
  });
}

// Upload: show the chosen file's text in the editor, so what is sent is what is seen.
function readSpecFile(input) {
  const area = document.querySelector("[data-testid=spec-text]");
  const file = input.files && input.files[0];
  if (!area || !file) return;
  file.text().then((text) => {
    area.value = text;
    area.dataset.source = file.name;
  });
}

// Utilisation chart (Apache ECharts, served by this server).
function drawUtilisation(el) {
  const data = JSON.parse(document.getElementById("util-data").textContent);
  if (typeof echarts === "undefined") return;
  const chart = echarts.init(el);
  chart.setOption({
    animation: false,
    grid: { left: 40, right: 16, top: 30, bottom: 28 },
    tooltip: { trigger: "axis", valueFormatter: (v) => v + "%" },
    legend: { top: 0 },
    xAxis: { type: "category", data: data.times, boundaryGap: false },
    yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
    series: Object.entries(data.series).map(([name, values]) => ({
      name, type: "line", showSymbol: false, step: "end", areaStyle: { opacity: 0.15 }, data: values,
    })),
  });
  window.addEventListener("resize", () => chart.resize());
  el.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  // A log opens at its tail, as `tail -f` does; a reader who scrolls up stops the following.
  document.querySelectorAll("pre.logs").forEach((pre) => { pre.scrollTop = pre.scrollHeight; });
  document.querySelectorAll("pre[data-stream]").forEach(streamLogs);
  const file = document.querySelector("[data-testid=spec-file]");
  const area = document.querySelector("[data-testid=spec-text]");
  if (file) file.addEventListener("change", () => readSpecFile(file));
  // Editing the text after choosing a file sends the edited text, not the file.
  if (file && area) area.addEventListener("input", () => { file.value = ""; });
  const chart = document.getElementById("util-chart");
  if (chart) drawUtilisation(chart);
});
