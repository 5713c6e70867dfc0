"""report.html's stylesheet, inlined in the page (the page loads nothing)."""

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.5rem auto;
max-width:1400px;padding:0 1rem;color:#1d232a;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.2rem .4rem}th{background:#f3f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td .sd{display:block;font-size:.72rem;color:#667}.scroll{overflow-x:auto}
td.best{background:#dff3e4}td.best strong{color:#0a5d22}td.inconclusive{color:#8a6d00}
.warning{background:#fff4d6;border:1px solid #e0b84c;padding:.4rem .6rem;margin:.5rem 0;max-width:1100px}
tr.model th{background:#e8eef6;text-align:left;font-size:.95rem}th[scope=row]{text-align:left;white-space:nowrap}
caption{caption-side:bottom;text-align:left;color:#555;font-size:.8rem;padding-top:.3rem;max-width:1100px}
figure{margin:1rem 0}figcaption{color:#444;font-size:.9rem;max-width:1100px}
img{max-width:100%;height:auto;border:1px solid #eee}
.kv td:first-child{font-weight:600;white-space:nowrap}.side{display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.8rem}.note{color:#555}
"""
