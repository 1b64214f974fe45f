"""Seeded generator of realistic, labelled support tickets for the demo and the unit tests.

The tickets are built from parts (products, symptoms, requests, generic phrases, signatures)
so that thousands of them are not duplicates. The queues share vocabulary on purpose, some
sentences are borrowed from a neighbouring queue and a few labels are simply wrong, as in a
real help desk: a text classifier should learn the queues well but not perfectly.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["CHANNELS", "FIELDS", "QUEUES", "generate_tickets", "write_tickets"]

# Column order of a generated row (and of the CSV written by ``write_tickets``).
FIELDS: tuple[str, ...] = (
    "ticket_id",
    "subject",
    "body",
    "tags",
    "queue",
    "type",
    "priority",
    "language",
    "created_at",
    "customer_id",
    "channel",
)

CHANNELS: tuple[str, ...] = ("email", "web", "chat", "phone")
_CHANNEL_WEIGHTS = (0.5, 0.25, 0.15, 0.1)

# Skewed on purpose: real help desks get far more technical tickets than sales questions.
_QUEUE_WEIGHTS: dict[str, float] = {
    "Technical Support": 0.30,
    "Product Support": 0.20,
    "IT Support": 0.16,
    "Billing and Payments": 0.15,
    "Returns and Exchanges": 0.11,
    "Sales and Pre-Sales": 0.08,
}
QUEUES: tuple[str, ...] = tuple(_QUEUE_WEIGHTS)

# Which queues a ticket's sentences (and mistaken labels) drift to: the confusable pairs.
_NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "Technical Support": ("Product Support", "IT Support"),
    "Product Support": ("Technical Support", "Sales and Pre-Sales"),
    "IT Support": ("Technical Support", "Product Support"),
    "Billing and Payments": ("Returns and Exchanges", "Sales and Pre-Sales"),
    "Returns and Exchanges": ("Billing and Payments", "Product Support"),
    "Sales and Pre-Sales": ("Billing and Payments", "Product Support"),
}

_BORROW_PROBABILITY = 0.2  # a core sentence comes from a neighbouring queue
_MISLABEL_PROBABILITY = 0.05  # the agent filed the ticket in a neighbouring queue
_GERMAN_PROBABILITY = 0.06
_EMPTY_SUBJECT_PROBABILITY = 0.08
_URGENT_PROBABILITY = 0.15

_SOFTWARE = (
    "CloudSync",
    "CloudSync Pro",
    "InvoicePro",
    "DataVault",
    "TeamBoard",
    "SecureMail",
    "AnalyticsHub",
    "PixelStudio",
    "FleetTrack",
    "the mobile app",
    "the customer portal",
    "the desktop client",
)
_HARDWARE = (
    "Dell XPS 13",
    "HP LaserJet Pro M404",
    "Lenovo ThinkPad T14",
    "Logitech MX Keys",
    "Canon PIXMA G620",
    "Samsung Galaxy Tab S8",
    "Cisco Meraki MX68",
    "Synology DS920+",
    "Jabra Evolve2 65 headset",
    "Dell UltraSharp U2723QE monitor",
)
_FEATURES = (
    "two-factor authentication",
    "the export to CSV",
    "single sign-on",
    "the reporting dashboard",
    "automatic backups",
    "user roles and permissions",
    "the API integration",
    "offline mode",
    "shared calendars",
    "the webhook notifications",
    "dark mode",
    "bulk import",
)
_ACTIONS = (
    "open a project",
    "log in",
    "upload a file",
    "save my changes",
    "sync the data",
    "print a report",
    "start the application",
    "export the report",
    "connect to the server",
    "open the settings page",
)
_SYMPTOMS = (
    "crashes",
    "freezes",
    "shows a blank screen",
    "times out",
    "stops responding",
    "closes without any message",
    "becomes extremely slow",
    "throws an error",
)
_WHEN = (
    "since yesterday",
    "since the last update",
    "this morning",
    "after the latest patch",
    "for about a week",
    "since we moved offices",
    "after I changed my password",
    "intermittently over the last few days",
)
_SYSTEMS = (
    "VPN",
    "shared network drive",
    "email account",
    "Wi-Fi in the office",
    "Active Directory account",
    "company laptop",
    "Outlook calendar",
    "Teams account",
    "office printer",
    "remote desktop",
)
_PLANS = ("Basic", "Standard", "Professional", "Business", "Enterprise")
_CURRENCIES = ("EUR", "USD", "GBP")
_CARDS = ("Visa", "Mastercard", "American Express", "PayPal", "SEPA direct debit")
_REASONS = (
    "it arrived damaged",
    "it is the wrong size",
    "it does not match the description",
    "the colour is different from the picture",
    "I ordered the wrong model",
    "it stopped working after two days",
    "a part is missing from the box",
)

# Core sentences per queue, each with the ticket type it suggests. ``{x}`` slots are filled
# by ``_fill``. Shared words (error, update, account, order, refund, license) are deliberate.
_CORE: dict[str, tuple[tuple[str, str], ...]] = {
    "Technical Support": (
        ("{software} {symptom} every time I try to {action}.", "incident"),
        ("I get error {code} when I {action} in {software}.", "incident"),
        ("The {hardware} {symptom} {when}.", "incident"),
        ("{software} is down for our whole team, nobody can {action}.", "outage"),
        ("There seems to be an outage: {software} {symptom} for all users.", "outage"),
        ("The sync between {software} and {software2} fails with error {code}.", "problem"),
        ("Data in {software} is not saved, the error log shows {code}.", "problem"),
        ("The integration with {software2} stopped working {when}.", "problem"),
        ("The {hardware} keeps disconnecting from the network {when}.", "problem"),
        ("After the update to version {version}, {software} {symptom}.", "incident"),
        ("Our server connection drops and {software} shows error {code}.", "outage"),
        ("The firmware update on the {hardware} failed and it does not boot.", "incident"),
    ),
    "Product Support": (
        ("How do I set up {feature} in {software}?", "request"),
        ("Is it possible to use {feature} with the {plan} plan?", "request"),
        ("The documentation for {feature} is unclear, which settings do I need?", "request"),
        ("Can you explain how {feature} works together with {software2}?", "request"),
        ("Is the {hardware} compatible with {software}?", "request"),
        ("Where can I find the user guide for the {hardware}?", "request"),
        ("We would like to enable {feature} for all users in {software}.", "change"),
        ("Please change the default settings of {feature} for our workspace.", "change"),
        ("I cannot find {feature} anymore after the update to version {version}.", "problem"),
        ("What is the recommended way to configure the {hardware} for {software}?", "request"),
        ("Does {software} support {feature} on the mobile app?", "request"),
        ("The {feature} option in {software} behaves differently than described.", "problem"),
    ),
    "IT Support": (
        ("I am locked out of my {system} and need a password reset.", "request"),
        ("Please grant me access to the {system} for the {team} team.", "request"),
        ("My {system} is not working {when}.", "incident"),
        ("Please set up a {hardware} for our new colleague starting on Monday.", "request"),
        ("I cannot connect to the {system} from home, the login fails.", "incident"),
        ("The MFA prompt for my {system} never arrives on my phone.", "problem"),
        ("Please install {software} on my company laptop, I need admin rights.", "request"),
        ("Our {system} is down for the whole {team} team.", "outage"),
        ("Please remove access to the {system} for a colleague who left.", "change"),
        ("My account was disabled and I cannot log in to the {system}.", "incident"),
        ("The {system} asks for my password again and again.", "problem"),
        ("Please move my mailbox and files to the new {system}.", "change"),
    ),
    "Billing and Payments": (
        ("I was charged twice for invoice {invoice}.", "incident"),
        ("My payment with {card} was declined although the card is valid.", "incident"),
        ("Please send me a corrected invoice with our VAT number.", "request"),
        ("The amount of {amount} {currency} on invoice {invoice} is wrong.", "problem"),
        ("Please update the billing address on our account.", "change"),
        (
            "Why did my subscription renew at {amount} {currency} instead of the old price?",
            "problem",
        ),
        ("Please switch our payment method to {card}.", "change"),
        ("I need a copy of all invoices for the last quarter for our accountant.", "request"),
        ("The refund of {amount} {currency} for the overcharge has not arrived yet.", "problem"),
        ("Please cancel the automatic renewal of our {plan} subscription.", "change"),
        ("Our account shows an outstanding balance that we already paid.", "problem"),
        ("The license fee on invoice {invoice} does not match our contract.", "problem"),
    ),
    "Returns and Exchanges": (
        ("I would like to return the {hardware} because {reason}.", "request"),
        ("Can I exchange the {hardware} from order {order} for another model?", "request"),
        ("The {hardware} I received in order {order} is damaged.", "incident"),
        ("Please send me a return label for order {order}.", "request"),
        ("I sent the {hardware} back {days} days ago and have not got my refund.", "problem"),
        ("What is the RMA number for returning the {hardware}?", "request"),
        ("I received the wrong item in order {order}, I ordered the {hardware}.", "incident"),
        ("The replacement {hardware} has the same defect as the first one.", "problem"),
        (
            "Is the {hardware} still within the return window? I bought it {days} days ago.",
            "request",
        ),
        ("Please exchange the {hardware} because {reason}.", "change"),
        ("The courier did not pick up the return for order {order}.", "problem"),
    ),
    "Sales and Pre-Sales": (
        ("Could you send us a quote for {seats} licenses of {software}?", "request"),
        ("Do you offer a discount for {seats} units of the {hardware}?", "request"),
        ("We are interested in the {plan} plan, can we schedule a demo?", "request"),
        ("Is the {hardware} in stock and what is the delivery time?", "request"),
        ("What is the difference between the {plan} and {plan2} plans?", "request"),
        ("We would like to upgrade from the {plan} plan to {plan2} for {seats} users.", "change"),
        ("Can we get a free trial of {software} before we buy?", "request"),
        ("Do you have partner or education pricing for {software}?", "request"),
        ("Please contact me about volume pricing for {seats} seats.", "request"),
        ("We are comparing vendors, does {software} include {feature}?", "request"),
    ),
}

# A few German core sentences per queue: the Bueck data set is multilingual and so are desks.
_CORE_DE: dict[str, tuple[tuple[str, str], ...]] = {
    "Technical Support": (
        ("{software} stürzt ab, wenn ich versuche, Daten zu synchronisieren.", "incident"),
        ("Seit dem Update erhalte ich Fehler {code} in {software}.", "incident"),
        ("Der Server ist ausgefallen, {software} ist für alle nicht erreichbar.", "outage"),
    ),
    "Product Support": (
        ("Wie richte ich {feature} in {software} ein?", "request"),
        ("Ist der {hardware} mit {software} kompatibel?", "request"),
    ),
    "IT Support": (
        ("Ich habe mein Passwort vergessen und bin aus meinem {system} ausgesperrt.", "request"),
        ("Bitte geben Sie mir Zugriff auf das {system}.", "request"),
    ),
    "Billing and Payments": (
        ("Die Rechnung {invoice} wurde doppelt abgebucht.", "incident"),
        ("Bitte senden Sie mir eine korrigierte Rechnung mit unserer USt-IdNr.", "request"),
    ),
    "Returns and Exchanges": (
        ("Ich möchte den {hardware} aus Bestellung {order} zurückgeben.", "request"),
        ("Der gelieferte {hardware} ist beschädigt angekommen.", "incident"),
    ),
    "Sales and Pre-Sales": (
        ("Können Sie uns ein Angebot für {seats} Lizenzen von {software} senden?", "request"),
        ("Ist der {hardware} auf Lager und wie lange dauert die Lieferung?", "request"),
    ),
}

# Subjects: a few per queue plus generic ones any queue can get.
_SUBJECTS: dict[str, tuple[str, ...]] = {
    "Technical Support": (
        "{software} {symptom}",
        "Error {code} in {software}",
        "Problem with {hardware}",
        "{software} not working",
        "Issue after update to {version}",
    ),
    "Product Support": (
        "Question about {feature}",
        "How to configure {feature}",
        "{software} {feature}",
        "Compatibility question: {hardware}",
    ),
    "IT Support": (
        "Password reset",
        "Access to {system}",
        "{system} not working",
        "New laptop setup",
        "Cannot log in",
    ),
    "Billing and Payments": (
        "Invoice {invoice}",
        "Double charge",
        "Payment declined",
        "Question about my invoice",
        "Subscription renewal",
    ),
    "Returns and Exchanges": (
        "Return request order {order}",
        "Exchange {hardware}",
        "Damaged item",
        "Refund for returned item",
    ),
    "Sales and Pre-Sales": (
        "Quote request",
        "Pricing for {seats} users",
        "Demo request",
        "{plan} plan question",
        "Availability of {hardware}",
    ),
}
_SUBJECTS_DE: dict[str, tuple[str, ...]] = {
    "Technical Support": ("Fehler in {software}", "Problem mit {hardware}"),
    "Product Support": ("Frage zu {feature}",),
    "IT Support": ("Passwort zurücksetzen", "Zugriff auf {system}"),
    "Billing and Payments": ("Rechnung {invoice}",),
    "Returns and Exchanges": ("Rücksendung Bestellung {order}",),
    "Sales and Pre-Sales": ("Angebotsanfrage",),
}
_GENERIC_SUBJECTS = (
    "Help needed",
    "Urgent request",
    "Question",
    "Support request",
    "Follow-up on my previous ticket",
    "Re: your ticket",
    "Issue with my account",
    "Need assistance",
)

_GREETINGS = ("Hello,", "Hi,", "Dear Support,", "Hello team,", "Hi there,", "Good morning,", "")
_GREETINGS_DE = ("Hallo,", "Sehr geehrtes Support-Team,", "Guten Tag,")
# Generic context that carries no queue signal but shares its words with every queue.
_CONTEXT = (
    "I have already tried restarting the {hardware}.",
    "This started {when}.",
    "Our team of {seats} people is affected.",
    "I am using {software} version {version}.",
    "My customer number is {customer}.",
    "I already contacted you about this last week but got no answer.",
    "I have attached a screenshot.",
    "This is affecting our work with clients.",
    "We have been a customer for several years.",
    "My order number is {order}, if that helps.",
    "The problem is related to my account.",
    "I checked the FAQ on your website but could not find an answer.",
    "A colleague has the same issue.",
    "I would appreciate a quick update on this.",
)
_CONTEXT_DE = (
    "Ich habe das Gerät bereits neu gestartet.",
    "Das Problem besteht {de_when}.",
    "Meine Kundennummer ist {customer}.",
)
_ASKS = (
    "Could you please look into this?",
    "Please advise on next steps.",
    "Can you help me with this?",
    "Please let me know what information you need.",
    "Thank you for your help.",
    "I would appreciate your help.",
    "",
)
_ASKS_DE = ("Können Sie mir bitte helfen?", "Vielen Dank im Voraus.")
_URGENT = (
    "This is urgent!",
    "URGENT: we cannot work at all.",
    "This is critical for our business, please respond as soon as possible.",
    "Our production is blocked.",
    "Please treat this as high priority.",
)
_URGENT_DE = ("Das ist dringend!", "Bitte dringend bearbeiten.")
_NAMES = (
    "John Smith",
    "Maria Garcia",
    "Anna Müller",
    "Liam O'Connor",
    "Priya Patel",
    "Chen Wei",
    "Sophie Martin",
    "Lukas Schneider",
    "Fatima Khan",
    "Tom",
    "Jana",
    "<name>",
)
_COMPANIES = ("Acme GmbH", "Globex Ltd", "Initech", "Umbrella Corp", "Stark Industries", "")
_CLOSINGS = ("Best regards,", "Kind regards,", "Thanks,", "Regards,", "Cheers,", "Thank you,")
_CLOSINGS_DE = ("Mit freundlichen Grüßen,", "Viele Grüße,")
_SIGNATURE_EXTRAS = (
    "Sent from my iPhone",
    "This e-mail may contain confidential information.",
    "Tel: +49 30 1234567",
    "IT Department",
    "--",
)
_DE_WHEN = ("seit gestern", "seit dem letzten Update", "seit heute Morgen")
_TEAMS = ("finance", "marketing", "sales", "engineering", "HR", "support", "logistics")

# Tags: most come from the queue's own pool, some are generic or borrowed, as in the Bueck data.
_QUEUE_TAGS: dict[str, tuple[str, ...]] = {
    "Technical Support": (
        "Bug",
        "Technical Issue",
        "Software Error",
        "Performance",
        "Crash",
        "Integration",
    ),
    "Product Support": ("Product", "Feature Request", "Documentation", "Configuration", "Guidance"),
    "IT Support": ("Access", "Password", "Network", "Security", "Account", "Hardware"),
    "Billing and Payments": ("Billing", "Payment", "Invoice", "Refund", "Subscription"),
    "Returns and Exchanges": ("Returns", "Exchange", "Refund", "Shipping", "Order", "Hardware"),
    "Sales and Pre-Sales": ("Sales", "Pricing", "Quote", "Demo", "Licensing", "Order"),
}
_GENERIC_TAGS = (
    "Customer Feedback",
    "Follow-up",
    "Account",
    "Documentation",
    "IT",
    "Tech Support",
    "Product",
)
_OUTAGE_TAGS = ("Outage", "Service Disruption", "Urgent Issue")

# (type weights) per kind of core sentence: the type follows the words, loosely.
_TYPE_BY_KIND: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "incident": (("Incident", "Problem", "Request"), (0.7, 0.25, 0.05)),
    "outage": (("Incident", "Problem"), (0.85, 0.15)),
    "problem": (("Problem", "Incident", "Request"), (0.6, 0.3, 0.1)),
    "request": (("Request", "Change", "Problem"), (0.8, 0.12, 0.08)),
    "change": (("Change", "Request"), (0.7, 0.3)),
}

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_SPAN_SECONDS = 180 * 24 * 3600


@dataclass(frozen=True)
class _Core:
    text: str
    kind: str  # a key of _TYPE_BY_KIND
    source: str  # the queue the sentence was taken from


def _fill(template: str, rng: random.Random) -> str:
    """Fill the ``{slot}`` placeholders of a template with random parts."""
    software, software2 = rng.sample(_SOFTWARE, 2)
    plan, plan2 = rng.sample(_PLANS, 2)
    values: dict[str, Callable[[], str]] = {
        "software": lambda: software,
        "software2": lambda: software2,
        "hardware": lambda: rng.choice(_HARDWARE),
        "feature": lambda: rng.choice(_FEATURES),
        "action": lambda: rng.choice(_ACTIONS),
        "symptom": lambda: rng.choice(_SYMPTOMS),
        "when": lambda: rng.choice(_WHEN),
        "de_when": lambda: rng.choice(_DE_WHEN),
        "system": lambda: rng.choice(_SYSTEMS),
        "team": lambda: rng.choice(_TEAMS),
        "plan": lambda: plan,
        "plan2": lambda: plan2,
        "card": lambda: rng.choice(_CARDS),
        "currency": lambda: rng.choice(_CURRENCIES),
        "reason": lambda: rng.choice(_REASONS),
        "code": lambda: rng.choice(("0x", "E", "ERR-", "")) + str(rng.randint(100, 9999)),
        "version": lambda: f"{rng.randint(1, 12)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
        "invoice": lambda: f"INV-{rng.randint(2023, 2024)}-{rng.randint(1, 99999):05d}",
        "order": lambda: f"#{rng.randint(100000, 999999)}",
        "amount": lambda: f"{rng.randint(9, 4999)}.{rng.randint(0, 99):02d}",
        "days": lambda: str(rng.randint(3, 45)),
        "seats": lambda: str(rng.choice((5, 10, 12, 25, 50, 100, 250, 500))),
        "customer": lambda: f"C-{rng.randint(10000, 99999)}",
    }
    out = template
    for key, make in values.items():
        token = "{" + key + "}"
        while token in out:
            out = out.replace(token, make(), 1)
    return out


def _typo(text: str, rng: random.Random) -> str:
    """Swap two adjacent letters inside one longer word, like a hurried typist."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    word = words[i]
    j = rng.randrange(1, len(word) - 2)
    words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def _pick_cores(queue: str, german: bool, rng: random.Random) -> list[_Core]:
    count = rng.choices((1, 2, 3), weights=(0.45, 0.4, 0.15))[0]
    cores = []
    for _ in range(count):
        source = queue
        if rng.random() < _BORROW_PROBABILITY:
            source = rng.choice(_NEIGHBOURS[queue])
        pool = _CORE_DE[source] if german else _CORE[source]
        template, kind = rng.choice(pool)
        cores.append(_Core(_fill(template, rng), kind, source))
    if all(core.source != queue for core in cores):
        # Keep at least one of the queue's own sentences: borrowed-only tickets would make
        # the label mostly unrecoverable rather than merely noisy.
        template, kind = rng.choice(_CORE_DE[queue] if german else _CORE[queue])
        cores[0] = _Core(_fill(template, rng), kind, queue)
    return cores


def _subject(queue: str, german: bool, rng: random.Random) -> str | None:
    if rng.random() < _EMPTY_SUBJECT_PROBABILITY:
        return None
    if german:
        return _fill(rng.choice(_SUBJECTS_DE[queue]), rng)
    roll = rng.random()
    if roll < 0.25:
        template = rng.choice(_GENERIC_SUBJECTS)
    elif roll < 0.35:
        template = rng.choice(_SUBJECTS[rng.choice(_NEIGHBOURS[queue])])
    else:
        template = rng.choice(_SUBJECTS[queue])
    subject = _fill(template, rng)
    if rng.random() < 0.1:
        subject = rng.choice(("Re: ", "Fwd: ", "AW: ", "[External] ")) + subject
    if rng.random() < 0.05:
        subject = subject.upper()
    return subject


def _signature(german: bool, rng: random.Random) -> list[str]:
    closing = rng.choice(_CLOSINGS_DE if german else _CLOSINGS)
    lines = [closing, rng.choice(_NAMES)]
    company = rng.choice(_COMPANIES)
    if company:
        lines.append(company)
    if rng.random() < 0.2:
        lines.append(rng.choice(_SIGNATURE_EXTRAS))
    return lines


def _join_lines(lines: list[str], channel: str, rng: random.Random) -> str:
    """Join body lines the way each channel mangles them (HTML, escaped newlines, one line)."""
    lines = [line for line in lines if line]
    if channel == "chat":
        return " ".join(lines)
    if channel == "phone":
        # Phone tickets are an agent's note, not the customer's letter.
        return "Caller reports: " + " ".join(lines)
    roll = rng.random()
    if roll < 0.12:
        return "<br>".join(lines)
    if roll < 0.18:
        return "<p>" + "</p><p>".join(lines) + "</p>"
    if roll < 0.26:
        # Exported by a system that escaped the newlines: a literal backslash-n in the text.
        return "\\n".join(lines)
    return "\n".join(lines)


def _body(cores: list[_Core], urgent: bool, german: bool, channel: str, rng: random.Random) -> str:
    lines: list[str] = []
    greeting = rng.choice(_GREETINGS_DE if german else _GREETINGS)
    if channel not in ("chat", "phone"):
        lines.append(greeting)
    sentences = [core.text for core in cores]
    context_pool = _CONTEXT_DE if german else _CONTEXT
    for _ in range(rng.choices((0, 1, 2, 3), weights=(0.2, 0.4, 0.3, 0.1))[0]):
        sentences.insert(rng.randrange(len(sentences) + 1), _fill(rng.choice(context_pool), rng))
    if urgent:
        sentences.insert(rng.randrange(2), rng.choice(_URGENT_DE if german else _URGENT))
    sentences.append(rng.choice(_ASKS_DE if german else _ASKS))
    if rng.random() < 0.3:
        sentences = [_typo(s, rng) if rng.random() < 0.5 else s for s in sentences]
    lines.append(" ".join(s for s in sentences if s))
    if channel in ("email", "web") and rng.random() < 0.8:
        lines.extend(_signature(german, rng))
    return _join_lines(lines, channel, rng)


def _tags(queue: str, cores: list[_Core], urgent: bool, rng: random.Random) -> list[str]:
    count = rng.choices((1, 2, 3, 4, 5), weights=(0.15, 0.3, 0.3, 0.15, 0.1))[0]
    own = _QUEUE_TAGS[queue]
    neighbour = _QUEUE_TAGS[rng.choice(_NEIGHBOURS[queue])]
    tags: list[str] = []
    if urgent or any(core.kind == "outage" for core in cores):
        tags.append(rng.choice(_OUTAGE_TAGS))
    while len(tags) < count:
        roll = rng.random()
        pool = own if roll < 0.65 else neighbour if roll < 0.8 else _GENERIC_TAGS
        tag = rng.choice(pool)
        if tag not in tags:
            tags.append(tag)
    return tags[:5]


def _type_and_priority(cores: list[_Core], urgent: bool, rng: random.Random) -> tuple[str, str]:
    kinds = [core.kind for core in cores]
    names, weights = _TYPE_BY_KIND[kinds[0]]
    ticket_type = rng.choices(names, weights=weights)[0]
    outage = "outage" in kinds
    if urgent and outage:
        priority = rng.choices(("high", "medium"), weights=(0.9, 0.1))[0]
    elif urgent or outage:
        priority = rng.choices(("high", "medium", "low"), weights=(0.65, 0.3, 0.05))[0]
    elif ticket_type in ("Incident", "Problem"):
        priority = rng.choices(("high", "medium", "low"), weights=(0.2, 0.55, 0.25))[0]
    else:
        priority = rng.choices(("high", "medium", "low"), weights=(0.05, 0.45, 0.5))[0]
    return ticket_type, priority


def _created_times(n: int, rng: random.Random) -> list[str]:
    """Sorted UTC timestamps, so ``created_at`` grows with ``ticket_id`` as on a real desk."""
    offsets = sorted(rng.randrange(_SPAN_SECONDS) for _ in range(n))
    return [(_EPOCH + timedelta(seconds=s)).isoformat().replace("+00:00", "Z") for s in offsets]


def generate_tickets(n: int, *, seed: int = 42) -> list[dict[str, Any]]:
    """Generate ``n`` labelled tickets; the same ``seed`` always gives the same tickets.

    Each row has the ``FIELDS`` keys; ``subject`` is ``None`` for a few tickets. The labels
    (``queue``, ``type``, ``priority``) are learnable from the text but noisy on purpose.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    queues = list(_QUEUE_WEIGHTS)
    weights = list(_QUEUE_WEIGHTS.values())
    customers = [f"C-{rng.randint(10000, 99999)}" for _ in range(max(1, n // 3))]
    times = _created_times(n, rng)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        queue = rng.choices(queues, weights=weights)[0]
        german = rng.random() < _GERMAN_PROBABILITY
        channel = rng.choices(CHANNELS, weights=_CHANNEL_WEIGHTS)[0]
        urgent = rng.random() < _URGENT_PROBABILITY
        cores = _pick_cores(queue, german, rng)
        ticket_type, priority = _type_and_priority(cores, urgent, rng)
        label = queue
        if rng.random() < _MISLABEL_PROBABILITY:
            label = rng.choice(_NEIGHBOURS[queue])
        rows.append(
            {
                "ticket_id": f"T-{i + 1:06d}",
                "subject": _subject(queue, german, rng),
                "body": _body(cores, urgent, german, channel, rng),
                "tags": _tags(queue, cores, urgent, rng),
                "queue": label,
                "type": ticket_type,
                "priority": priority,
                "language": "de" if german else "en",
                "created_at": times[i],
                "customer_id": rng.choice(customers),
                "channel": channel,
            }
        )
    return rows


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The known fields first, then any extra keys in order of first appearance."""
    columns = [f for f in FIELDS if any(f in row for row in rows)] if rows else list(FIELDS)
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    return columns


def write_tickets(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write rows as ``.jsonl``, ``.csv`` (tags joined with ", ") or ``.parquet``; return path."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv", ".parquet"):
        raise ValueError(f"cannot write {path}: use a .jsonl, .csv or .parquet file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(dict(row), ensure_ascii=False, default=str) + "\n")
    elif suffix == ".csv":
        columns = _columns(rows)
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    else:
        # Imported here: pyarrow is heavy and only this branch needs it.
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = _columns(rows)
        table = pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])
        pq.write_table(table, path)
    logger.info("wrote %d tickets to %s", len(rows), path)
    return path


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return value
