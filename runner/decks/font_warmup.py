"""Imported only by the render workers' forkserver (runner.render.pool.PRELOAD): every worker then
starts with fontTools and the font tables it reads already imported, and with the two DejaVu subsets
an English deck needs already made, so a run pays for them once (about 0.1 s of CPU), not each worker
for its first deck. The coordinator, which never builds a deck, never imports it.
"""

from fontTools.ttLib.tables import _c_m_a_p, _h_m_t_x, _n_a_m_e, _p_o_s_t  # type: ignore[import-untyped]  # noqa: F401

from runner.decks.pdf_font import warm

warm()
