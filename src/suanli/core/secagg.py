"""Secure aggregation by pairwise masks: the aggregator learns the sum of the clients' updates and
nothing about any one of them.

The protocol is the pairwise-masking core of Bonawitz et al., "Practical Secure Aggregation for
Privacy-Preserving Machine Learning" (CCS 2017), with its dropout recovery:

1. Every client makes an X25519 key pair for the round and publishes the public key
   (:class:`Participant`, :meth:`Participant.public_key`).
2. Each pair of clients ``(i, j)`` derives the same 32-byte seed: HKDF-SHA256 over their X25519
   shared secret, salted with the round id (:func:`pair_seed`). The seed expands (SHAKE-256) into
   a mask vector in the ring of integers modulo 2**64.
3. A client encodes its update in fixed point and adds the mask it shares with every peer whose
   id sorts after its own and subtracts the mask it shares with every peer sorting before it
   (:meth:`Participant.mask`). The aggregator receives only these masked vectors, which are
   uniformly distributed in the ring to anyone without the seeds.
4. Summed, every pair's mask appears once with each sign and cancels, so the sum of masked vectors
   decodes to the sum of the updates (:meth:`Round.aggregate`).
5. A client that published a key but sent no masked update (a dropout) leaves its pairs' masks in
   the sum. The survivors then reveal the seed each of them shares with the dropped client
   (:meth:`Participant.reveal_for`), and the aggregator removes those masks. A dropped client's
   late update is refused once it is declared dropped (:class:`Round`), because with its revealed
   seeds it would no longer be masked.

What this leaves out (and the docs say so): the per-client self-mask and Shamir sharing of the
keys that let the full protocol also resist an aggregator that *lies* about who dropped. Here the
aggregator is the front desk's aggregator job, whose round state is on the ledger.

Pure: no I/O. ``cryptography`` (a base dependency) provides X25519 and HKDF.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from suanli.core.errors import SuanliError

#: The ring the masked vectors live in.
MODULUS = 2**64
#: Fixed-point scale: an update's coordinates are multiplied by this and rounded.
SCALE = 2**24
#: The largest |coordinate| sum that decodes without wrapping around the ring.
LIMIT = MODULUS // (2 * SCALE)


class SecAggError(SuanliError):
    """A secure-aggregation round cannot go on (a missing seed, a late update, a wrong length)."""


def encode(values: Sequence[float]) -> list[int]:
    """Fixed-point encoding of a float vector into the ring."""
    out = []
    for v in values:
        if not abs(v) < LIMIT:
            raise SecAggError(f"a coordinate of {v} is outside ±{LIMIT}; clip the update before masking it")
        out.append(round(v * SCALE) % MODULUS)
    return out


def decode(values: Sequence[int]) -> list[float]:
    """The inverse of :func:`encode` (for sums too: values above half the ring are negative)."""
    half = MODULUS // 2
    return [((v - MODULUS) if v >= half else v) / SCALE for v in values]


def pair_seed(own: X25519PrivateKey, peer: bytes, round_id: str) -> bytes:
    """The 32-byte seed two clients share: HKDF-SHA256 over X25519, salted with the round id."""
    shared = own.exchange(X25519PublicKey.from_public_bytes(peer))
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=round_id.encode(), info=b"suanli/secagg/pair-mask/v1"
    ).derive(shared)


def expand(seed: bytes, length: int) -> list[int]:
    """A seed's mask vector: ``length`` ring elements from SHAKE-256."""
    stream = hashlib.shake_256(seed).digest(8 * length)
    return [int.from_bytes(stream[8 * k : 8 * k + 8], "little") for k in range(length)]


def _add(a: list[int], b: Sequence[int], sign: int) -> None:
    for k, v in enumerate(b):
        a[k] = (a[k] + sign * v) % MODULUS


@dataclass
class Participant:
    """One client's side of a round: its key pair, the peers' public keys, its masking."""

    #: The client's id in the round (e.g. its dataset's name); ids order the mask signs.
    client_id: str
    round_id: str
    _key: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate, repr=False)

    def public_key(self) -> bytes:
        """The raw 32-byte X25519 public key this client publishes for the round."""
        return self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def mask(self, update: Sequence[float], peers: Mapping[str, bytes]) -> list[int]:
        """The masked, encoded update to send: ``encode(update) + Σ_{j>i} m_ij − Σ_{j<i} m_ij``.

        ``peers`` maps every other client that published a key to that key (its own entry, if
        present, is ignored).
        """
        out = encode(update)
        for peer, key in sorted(peers.items()):
            if peer == self.client_id:
                continue
            _add(out, expand(pair_seed(self._key, key, self.round_id), len(out)), 1 if self.client_id < peer else -1)
        return out

    def reveal_for(self, dropped: Sequence[str], peers: Mapping[str, bytes]) -> dict[str, bytes]:
        """The seeds this survivor shares with each dropped client, for the aggregator to unmask
        the sum. Only seeds with dropped clients ever leave: a survivor's own masks stay secret."""
        return {d: pair_seed(self._key, peers[d], self.round_id) for d in dropped if d != self.client_id}


@dataclass
class Round:
    """The aggregator's side of a round: the published keys, the masked updates, the sum.

    It holds only what the aggregator receives, never a client's key or plaintext update.
    """

    round_id: str
    length: int
    keys: dict[str, bytes] = field(default_factory=dict)
    masked: dict[str, list[int]] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)

    def publish(self, client_id: str, key: bytes) -> None:
        if self.masked:
            raise SecAggError(f"round {self.round_id} is already collecting updates; {client_id} joined too late")
        self.keys[client_id] = key

    def submit(self, client_id: str, masked: Sequence[int], n: int = 1) -> None:
        """Take one client's masked update (and its example count, which is not secret)."""
        if client_id not in self.keys:
            raise SecAggError(f"{client_id} published no key in round {self.round_id}")
        if client_id in self.dropped:
            raise SecAggError(f"{client_id} was declared dropped in round {self.round_id}; its update is refused")
        if len(masked) != self.length:
            raise SecAggError(f"{client_id} sent {len(masked)} values; round {self.round_id} needs {self.length}")
        self.masked[client_id] = [int(v) % MODULUS for v in masked]
        self.weights[client_id] = n

    def close(self) -> list[str]:
        """Declare every client with a key but no update dropped; return them (sorted)."""
        self.dropped = set(self.keys) - set(self.masked)
        return sorted(self.dropped)

    def aggregate(self, reveals: Mapping[str, Mapping[str, bytes]] | None = None) -> list[float]:
        """The decoded sum of the survivors' updates.

        ``reveals`` maps each survivor to the seeds it shares with the dropped clients
        (:meth:`Participant.reveal_for`); every survivor must reveal for every dropped client.
        """
        dropped = self.close()
        total = [0] * self.length
        for vec in self.masked.values():
            _add(total, vec, 1)
        for survivor in sorted(self.masked):
            got = (reveals or {}).get(survivor, {})
            for d in dropped:
                if d not in got:
                    raise SecAggError(f"{survivor} has not revealed its seed with dropped client {d}")
                # The survivor added m_sd when s < d; remove exactly what it added.
                _add(total, expand(got[d], self.length), -1 if survivor < d else 1)
        return decode(total)


def pack(vec: Sequence[int]) -> str:
    """A masked vector on the wire: hex of little-endian 64-bit ring elements."""
    return b"".join((v % MODULUS).to_bytes(8, "little") for v in vec).hex()


def unpack(text: str, length: int) -> list[int]:
    raw = bytes.fromhex(text)
    if len(raw) != 8 * length:
        raise SecAggError(f"a masked vector of {len(raw) // 8} values came; this model has {length}")
    return [int.from_bytes(raw[8 * k : 8 * k + 8], "little") for k in range(length)]
