"""A chat box for notebooks and Voila: streaming replies, Stop, context meter.

>>> from kit.widgets import ChatWidget
>>> chat = ChatWidget(system="Answer in one sentence.")
>>> chat                                   # type, press Enter, watch it stream

The work is done by kit.chat (Conversation.ask, export); this module only
wires widgets to it. Answers are generated in a background thread so the
kernel stays free to hear the Stop button.
"""
from __future__ import annotations

import base64
import html
import threading
import time

import ipywidgets as W

from kit.chat import RESERVE, Conversation, default_folder, export
from kit.errors import KitError, PromptTooLong

UPDATE_EVERY_S = 0.05  # redraw a streaming reply at most 20 times a second
QUIET_S = 0.5  # the box is emptied of sent lines once typing has paused this long
STALE_S = 2.0  # how long after emptying it a message from the browser may predate it
_STYLE = """<style>
.kit-msg {padding: 4px 10px; margin: 3px 0; border-radius: 8px; max-width: 95%}
.kit-msg p {margin: 2px 0}
.kit-user {background: #e8f0fe} .kit-assistant {background: #f3f3f3}
.kit-notice {background: #fff4ce; font-size: 90%}
.kit-error {background: #fde7e9}
.kit-chat-queued {opacity: 0.6}
.kit-chat-prompt textarea {height: 2em; line-height: 2em; padding-top: 0;
  padding-bottom: 0; resize: none}
</style>"""


def markdown_html(text: str) -> str:
    """Markdown to HTML, with any HTML in the text shown as text (escaped)."""
    try:
        import mistune  # comes with Jupyter (nbconvert uses it)

        return mistune.create_markdown(escape=True, plugins=["strikethrough", "table"]
                                       )(text)
    except ImportError:
        return f"<pre style='white-space:pre-wrap'>{html.escape(text)}</pre>"


def _bubble(kind: str, body_html: str) -> str:
    who = {"user": "You", "assistant": "Model", "notice": "Note",
           "error": "Problem"}[kind]
    return f"<div class='kit-msg kit-{kind}'><b>{who}:</b> {body_html}</div>"


def download_link(path, mime: str) -> str:
    """An HTML link that downloads a small file from the browser (data: URL)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.name)
    return (f"<a download='{name}' href='data:{mime};charset=utf-8;base64,{data}'>"
            f"{name}</a>")


class ChatWidget(W.VBox):
    """Chat with an installed model; everything said is in `.conv`."""

    def __init__(self, model: str | None = None, system: str = "",
                 temperature: float = 0.7, max_tokens: int = 256,
                 n_ctx: int | None = None, folder=None, preload: bool = True, **kw):
        from kit.settings import get_settings
        from kit.models.registry import installed

        cfg = get_settings()
        names = list(installed()) or [cfg.default_model]
        model = model or (cfg.default_model if cfg.default_model in names else names[0])
        self.n_ctx = n_ctx or cfg.n_ctx
        self.conv = Conversation(system=system)
        self.loaded = None  # the model object once loaded
        self.stream = None  # the answer being generated, for Stop
        self._thread: threading.Thread | None = None
        self._load_lock = threading.Lock()
        # Messages sent while an answer is being written wait here, in order,
        # each with its bubble (marked "waiting") in the log.
        self.queue: list[tuple[str, W.HTML]] = []
        self._queue_lock, self._box_lock = threading.RLock(), threading.RLock()
        # The message box belongs to the browser while the learner types: the
        # kernel never rewrites it then (a rewrite in flight would erase the
        # keys typed meanwhile). Sent lines (`_taken`) stay at the top of the
        # box, out of sight in its one visible row, until typing pauses.
        self._taken, self._lost, self._last_key = "", "", 0.0  # _lost: see _clear_sent
        self._stale = ("", 0.0)  # text removed from the box, and until when it may echo
        self._clear_timer: threading.Timer | None = None
        self._writing = self._stop_asked = False
        self._working = False  # answering; cleared only when the queue is empty

        self.model_pick = W.Dropdown(options=names if model in names else [model, *names],
                                     value=model, description="Model")
        self.temperature = W.FloatSlider(value=temperature, min=0, max=2, step=0.1,
                                         description="Temperature",
                                         style={"description_width": "initial"})
        self.max_tokens = W.IntSlider(value=max_tokens, min=16, max=1024, step=16,
                                      description="Max tokens",
                                      style={"description_width": "initial"})
        self.system = W.Textarea(value=system, rows=2, description="System",
                                 placeholder="How the model should behave, e.g. "
                                 "'Answer in one short sentence.'",
                                 layout=W.Layout(width="98%"))
        # the bubbles, oldest first; never shrunk, so the box around scrolls
        self.history = W.VBox(layout=W.Layout(flex="0 0 auto", overflow="visible"))
        # The log shows the newest bubble: a scroll box laid out bottom-up
        # (column-reverse) stays anchored at its end while the answer grows.
        self.scroller = W.Box([self.history], layout=W.Layout(
            max_height="420px", min_height="80px", overflow="auto",
            flex_flow="column-reverse", border="1px solid #ddd", padding="4px"))
        # Enter sends. The box is a one-line text area: Enter adds a newline
        # to the text, and text and newline reach the kernel in one update.
        # (A Text box's separate "submit" message can overtake the last
        # keystrokes when typing fast, sending a cut or an older message.)
        # Keys typed fast may arrive together ("...?\nWh"): each line up to
        # a newline is one message, the rest stays (see _on_prompt_change).
        self.prompt = W.Textarea(placeholder="Type a message and press Enter",
                                 rows=1, continuous_update=True,
                                 layout=W.Layout(flex="1"))
        self.prompt.observe(self._on_prompt_change, "value")
        self.send_button = W.Button(description="Send", button_style="primary")
        self.stop_button = W.Button(description="Stop", button_style="danger", disabled=True)
        self.reset_button = W.Button(description="Reset")
        self.meter = W.IntProgress(value=0, min=0, max=self.n_ctx,
                                   layout=W.Layout(width="160px"))
        self.context = W.HTML(f"Context: 0 of {self.n_ctx} tokens used")
        self.status = W.HTML("Loading the model..." if preload else "Ready.")
        self.folder = W.Text(value=str(folder or default_folder()),
                             description="Folder", layout=W.Layout(width="60%"))
        self.export_button = W.Button(description="Export transcript")
        self.exported = W.HTML()
        for widget, name in [(self.prompt, "prompt"), (self.send_button, "send"),
                             (self.stop_button, "stop"), (self.reset_button, "reset"),
                             (self.scroller, "log"), (self.status, "status"),
                             (self.system, "system"),
                             (self.context, "context"), (self.exported, "exported"),
                             (self.export_button, "export"), (self.folder, "folder")]:
            widget.add_class(f"kit-chat-{name}")
        self.send_button.on_click(lambda _b: self.ask())
        self.stop_button.on_click(lambda _b: self.stop())
        self.reset_button.on_click(lambda _b: self.reset())
        self.export_button.on_click(lambda _b: self.export())
        self.model_pick.observe(lambda _change: threading.Thread(
            target=self._preload, daemon=True).start(), "value")
        # The message box is the first text field; the system prompt follows.
        super().__init__([
            W.HTML(_STYLE), W.HBox([self.model_pick, self.temperature, self.max_tokens]),
            self.scroller,
            W.HBox([self.prompt, self.send_button, self.stop_button, self.reset_button]),
            W.HBox([W.Label("Context"), self.meter, self.context]), self.status,
            self.system, W.HBox([self.folder, self.export_button]), self.exported], **kw)
        self.add_class("kit-chat")
        if preload:  # load while the learner types, so the first answer is quick
            threading.Thread(target=self._preload, daemon=True).start()

    # -- actions ------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """An answer is being written (or messages wait for their turn)."""
        return self._working

    @property
    def unsent(self) -> str:
        """What is typed in the box and not sent yet."""
        with self._box_lock:
            value = self.prompt.value
            taken = self._taken if value.startswith(self._taken) else ""
            return self._lost + value[len(taken):]

    def ask(self, text: str | None = None) -> bool:
        """Send text (default: what is typed); False if empty. While an answer
        is being written it waits its turn (`.queue`), shown in the log."""
        if text is None:
            with self._box_lock:
                text = self.unsent
                if text.strip():  # all of the box is sent now
                    self._taken, self._lost = self.prompt.value, ""
                    self._schedule_clear()
        text = text.strip()
        if not text:
            return False
        self._submit(text)
        return True

    def stop(self) -> None:
        """Stop the answer being written (messages waiting still get theirs)."""
        self._stop_asked = True  # also felt by an answer still loading its model
        if self.stream is not None:
            self.stream.cancel()

    def wait(self, timeout: float = 60) -> None:
        """Block until every answer is finished (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while self._thread is not None and time.monotonic() < deadline:
            thread = self._thread
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread is self._thread:
                break

    def reset(self) -> None:
        """Forget the waiting messages, stop any answer, forget the conversation."""
        with self._queue_lock:
            self.queue.clear()
        self.stop()
        self.wait(5)
        self.conv.clear()
        self.history.children = ()
        self.exported.value = ""
        self._show_usage()
        self.status.value = "Conversation cleared."

    def export(self):
        """Write the transcript (Markdown and JSON); show download links."""
        try:
            md, js = export(self.conv, self.folder.value, self.loaded)
        except KitError as exc:
            self.exported.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return None
        self.exported.value = (f"Saved in {html.escape(str(md.parent))}: "
                               f"{download_link(md, 'text/markdown')} · "
                               f"{download_link(js, 'application/json')}")
        return md, js

    # -- inside -------------------------------------------------------------
    def _on_prompt_change(self, change) -> None:
        """Keys arrived: each finished line (Enter) is a message; the rest stays."""
        with self._box_lock:
            if self._writing:  # the kernel's own emptying of the box
                return
            value, now = change["new"], time.monotonic()
            self._last_key = now
            stale, until = self._stale
            if stale and now < until and value.startswith(stale):
                # Typed before the browser saw the box emptied: the browser has
                # dropped these keys from the box, so keep them here.
                extra = value[len(stale):]
                if "\n" in extra:
                    done, extra = extra.rsplit("\n", 1)
                    self._stale = (stale + done + "\n", until)
                    self._send_lines(done)
                self._lost = extra
                return
            self._stale = ("", 0.0)  # the browser has the emptied box now
            if not value.startswith(self._taken):
                self._taken = ""  # emptied, or the learner edited sent lines
            unsent = self._lost + value[len(self._taken):]
            if "\n" in unsent:
                done, rest = unsent.rsplit("\n", 1)
                self._taken, self._lost = value[:len(value) - len(rest)], ""
                self._send_lines(done)
            self._schedule_clear()

    def _send_lines(self, text: str) -> None:
        for line in text.split("\n"):
            if line.strip():
                self._submit(line.strip())

    def _schedule_clear(self) -> None:
        if not self._taken:
            return
        if self._clear_timer is not None:
            self._clear_timer.cancel()
        self._clear_timer = threading.Timer(QUIET_S, self._clear_sent)
        self._clear_timer.daemon = True
        self._clear_timer.start()

    def _clear_sent(self) -> None:
        """Typing paused and everything typed is sent: empty the box."""
        with self._box_lock:
            if time.monotonic() - self._last_key < QUIET_S * 0.9:
                return self._schedule_clear()  # a key came in meanwhile
            value = self.prompt.value
            if not self._taken or value != self._taken or self._lost:
                return  # half a message is typed: leave it until the next pause
            self._writing = True
            try:
                self.prompt.value = ""
            finally:
                self._writing = False
            self._stale = (self._taken, time.monotonic() + STALE_S)
            self._taken = ""

    def _submit(self, text: str) -> None:
        """Answer now, or after the answers already asked for."""
        with self._queue_lock:
            if self._working:
                bubble = self._add("user", markdown_html(text)
                                   + "<i>(waits for the answer above)</i>")
                bubble.add_class("kit-chat-queued")
                self.queue.append((text, bubble))
                self.status.value = f"Still answering{self._waiting()}"
                return
            self._working = True
        self.send_button.disabled, self.stop_button.disabled = True, False
        self._thread = threading.Thread(target=self._work, args=(text, None), daemon=True)
        self._thread.start()

    def _waiting(self) -> str:
        n = len(self.queue)
        return (f" · {n} message{'s' if n > 1 else ''} waiting: each is sent when "
                "the answer before it ends") if n else ""

    def _work(self, text: str, bubble) -> None:
        """Answer, then each waiting message in turn."""
        while True:
            self._answer(text, bubble)
            with self._queue_lock:
                if not self.queue:
                    self._working = False
                    self.send_button.disabled, self.stop_button.disabled = False, True
                    return
                text, bubble = self.queue.pop(0)

    def _add(self, kind: str, body_html: str) -> W.HTML:
        item = W.HTML(_bubble(kind, body_html))
        item.add_class(f"kit-chat-{kind}")
        self.history.children = (*self.history.children, item)
        return item

    def _model(self):
        from kit.engines import load

        name = self.model_pick.value
        with self._load_lock:  # the preload thread may be loading it right now
            if self.loaded is None or self.loaded.name != name:
                self.status.value = f"Loading {html.escape(name)}..."
                model = load(name, n_ctx=self.n_ctx, quiet=True)
                self.status.value = (
                    f"Loaded {html.escape(name)} ({model.facts.quantization}) on "
                    f"{model.describe()} in {model.load_s:.2f} s. Ready.")
                self.loaded = model
        return self.loaded

    def _preload(self) -> None:
        try:
            self._model()
            self._show_usage()
        except KitError as exc:  # e.g. no model yet: the message says the fix
            self.status.value = html.escape(str(exc))

    def _show_usage(self) -> None:
        if self.loaded is None:
            return
        use = self.conv.usage(self.loaded, reserve=min(RESERVE, self.max_tokens.value))
        self.meter.max, self.meter.value = use.n_ctx, min(use.used, use.n_ctx)
        self.context.value = html.escape(use.line())

    def _answer(self, text: str, bubble=None) -> None:
        if bubble is None:
            self._add("user", markdown_html(text))
        else:  # its turn has come
            bubble.value = _bubble("user", markdown_html(text))
            bubble.remove_class("kit-chat-queued")
        self.stop_button.disabled, self._stop_asked = False, False
        try:
            model = self._model()
            self.conv.system = self.system.value.strip()
            seen = len(self.conv.notices)
            self.stream = self.conv.ask(model, text, temperature=self.temperature.value,
                                        max_tokens=self.max_tokens.value)
            if self._stop_asked:
                self.stream.cancel()
            for note in self.conv.notices[seen:]:
                self._add("notice", html.escape(note))
            reply = self._add("assistant", "<i>...</i>")
            parts, last = [], 0.0
            for piece in self.stream:
                parts.append(piece)
                now = time.monotonic()
                if now - last >= UPDATE_EVERY_S:
                    reply.value = _bubble("assistant", markdown_html("".join(parts)))
                    self.status.value = (f"Generating... {self.stream.stats.generated_tokens}"
                                         f" tokens{self._waiting()}")
                    last = now
            reply.value = _bubble("assistant", markdown_html("".join(parts)) or "<i>(no text)</i>")
            for note in self.stream.stats.notices:
                self._add("notice", html.escape(note))
            self.status.value = html.escape(self.stream.stats.line())
            self._show_usage()
        except PromptTooLong as exc:  # the page cannot change n_ctx: say what it can do
            self._add("error", html.escape(
                f"This message takes {exc.n_prompt} tokens with the system prompt, "
                f"more than the model's context window of {exc.n_ctx}. Shorten the "
                "message or the system prompt, or send it in parts."))
            self.status.value = "Not answered: the reason is the last message in the chat."
        except KitError as exc:
            self._add("error", html.escape(str(exc)))
            self.status.value = "Not answered: the reason is the last message in the chat."
        except Exception as exc:  # never let a thread die silently
            self._add("error", html.escape(f"{type(exc).__name__}: {exc}. Press Reset "
                                           "and try again; if it repeats, restart "
                                           "the kernel."))
            self.status.value = "Not answered: the reason is the last message in the chat."
        finally:
            self.stream = None
