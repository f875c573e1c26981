"""The atlas page's look: CSS and the few lines of script (click a plot to enlarge it)."""

CSS = """
:root{--held:#1f8f3a;--failed:#c62828;--built:#c98a00;--none:#b9bec7;--ink:#1d2330;--soft:#5b6472;
--line:#e3e6eb;--bg:#fafbfc}
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:0;background:var(--bg)}
main{max-width:1120px;margin:0 auto;padding:0 16px 48px}
header{padding:24px 0 8px} h1{margin:0 0 4px;font-size:1.8rem} .lede{color:var(--soft);margin:4px 0}
.stats{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}
.stat{background:#fff;border:1px solid var(--line);border-radius:8px;padding:6px 12px}
.stat b{font-size:1.2rem}
#map{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px;margin:12px 0 24px}
.maprow{display:flex;align-items:flex-start;gap:8px;margin:6px 0}
.maprow .part{width:150px;flex:none;font-size:.85rem;color:var(--soft);padding-top:6px}
.cells{display:flex;flex-wrap:wrap;gap:6px}
a.cell{display:block;width:92px;overflow-wrap:anywhere;min-height:54px;padding:4px 6px;border-radius:6px;color:#fff;text-decoration:none;
font-size:.72rem;line-height:1.2;overflow:hidden}
a.cell b{display:block;font-size:.95rem}
a.cell[data-state=held]{background:var(--held)} a.cell[data-state=failed]{background:var(--failed)}
a.cell[data-state=built]{background:var(--built)} a.cell[data-state=none]{background:var(--none);color:#333}
a.cell:focus,a.cell:hover{outline:3px solid #333}
.legend{display:flex;flex-wrap:wrap;gap:12px;font-size:.85rem;color:var(--soft);margin-top:8px}
.legend span:before{content:"";display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:4px;vertical-align:-1px}
.legend .held:before{background:var(--held)} .legend .failed:before{background:var(--failed)}
.legend .built:before{background:var(--built)} .legend .none:before{background:var(--none)}
h2{margin:32px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
section.place{background:#fff;border:1px solid var(--line);border-left:6px solid var(--none);border-radius:8px;
padding:12px 16px;margin:12px 0;scroll-margin-top:8px}
section.place[data-state=held]{border-left-color:var(--held)} section.place[data-state=failed]{border-left-color:var(--failed)}
section.place[data-state=built]{border-left-color:var(--built)}
section.place h3{margin:0;font-size:1.15rem} .pid{color:var(--soft);margin-right:6px}
.seeds,.claimline{font-size:.9rem;color:var(--soft);margin:2px 0}
.top{float:right;font-size:.8rem;color:var(--soft)}
article.exp{border-top:1px solid var(--line);margin-top:10px;padding-top:10px}
.badges{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
.badge{border-radius:999px;padding:2px 10px;font-size:.8rem;font-weight:600;color:#fff;background:var(--none)}
.badge.held{background:var(--held)} .badge.failed{background:var(--failed)} .badge.stale{background:var(--built)}
.badge.info{background:#eef0f3;color:var(--ink);font-weight:500}
table.head{border-collapse:collapse;margin:8px 0;font-size:.95rem;width:100%;max-width:760px}
table.head th,table.head td{text-align:left;padding:4px 10px;border-bottom:1px solid var(--line);vertical-align:top}
table.head th{font-size:.8rem;color:var(--soft);font-weight:600}
table.head td.num{font-variant-numeric:tabular-nums;font-weight:600}
.notes{font-size:.9rem;color:#333;margin:6px 0}
.plots{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.plots figure{margin:0;flex:1 1 420px;max-width:100%}
.plots img{width:100%;border:1px solid var(--line);border-radius:4px;cursor:zoom-in;background:#fff}
.plots figcaption{font-size:.75rem;color:var(--soft)}
img.zoom{position:fixed;inset:2vh 2vw;width:96vw;height:96vh;object-fit:contain;z-index:10;cursor:zoom-out;
box-shadow:0 0 0 100vmax rgba(0,0,0,.7)}
details{margin:6px 0} summary{cursor:pointer;color:var(--soft);font-size:.9rem}
table.all{border-collapse:collapse;font-size:.8rem} table.all td{padding:2px 8px;border-bottom:1px solid var(--line);
font-family:ui-monospace,Menlo,monospace;word-break:break-word}
.code{font-size:.85rem} .code a{margin-right:10px;overflow-wrap:anywhere}
.error{color:var(--failed);font-family:ui-monospace,monospace;font-size:.85rem;white-space:pre-wrap}
@media (max-width:640px){.maprow{flex-direction:column}.maprow .part{width:auto;padding:0}
a.cell{width:74px;min-height:46px;font-size:.66rem}body{font-size:15px}}
"""

SCRIPT = """
document.addEventListener('click', function (e) {
  var t = e.target;
  if (t && t.tagName === 'IMG' && t.classList.contains('plot')) { t.classList.toggle('zoom'); }
});
document.addEventListener('keydown', function (e) {
  if (e.key === 'Escape') { document.querySelectorAll('img.zoom').forEach(function (i) { i.classList.remove('zoom'); }); }
});
"""
